"""Report tables as people open them: CSV for Excel on a Chinese Windows and
XLSX (openpyxl).

A report route hands over the same rows it puts in its JSON (column keys and
value tuples); this module gives each column its Chinese header and unit and
writes the values in the city's words: local times (``2026-11-27 21:30:05``
in ``[city] timezone``), 渣土车 for ``muck_truck``, 超速 for ``overspeed``,
是/否 for booleans. Numbers stay the numbers of the JSON, unrounded further.

CSV starts with a UTF-8 byte-order mark: without it Excel on a Chinese
Windows reads UTF-8 as GBK and shows mojibake. XLSX cells carry real numbers
and local date-times (Excel has no time zones; the header names the zone).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

Kind = Literal["text", "number", "time", "bool", "class", "alert_kind", "state"]
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
BOM = "\ufeff"

CLASS_ZH = {"muck_truck": "渣土车", "mixer_truck": "搅拌车", "patrol": "执法车", "other": "其他"}
KIND_ZH = {
    "zone": "进出区域",
    "forbidden_zone": "闯入禁行区",
    "route_deviation": "偏离路线",
    "overspeed": "超速",
    "curfew": "非许可时段行驶",
    "illegal_dumping": "疑似偷倒",
    "uncovered_load": "未密闭运输",
    "offline": "终端离线",
    "delivery_overtime": "搅拌车超时",
    "sos": "紧急报警",
    "tampering": "终端破坏",
    "terminal_alarm": "终端报警",
}
STATE_ZH = {"open": "待处理", "acked": "已确认", "closed": "已关闭"}


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    kind: Kind = "text"
    width: int = 14


# Every column key a report uses, once.
COLUMNS: dict[str, Column] = {
    "id": Column("编号"),
    "vehicle_id": Column("车辆编号"),
    "plate": Column("车牌"),
    "class": Column("车辆类型", "class", 10),
    "company": Column("所属公司", width=24),
    "vehicles": Column("车辆数", "number", 8),
    "distance_km": Column("里程(km)", "number", 11),
    "driving_s": Column("行驶时间(秒)", "number", 12),
    "max_speed_kmh": Column("最高速度(km/h)", "number", 14),
    "fixes": Column("定位点数", "number", 10),
    "kind": Column("告警类型", "alert_kind", 16),
    "day": Column("日期", width=12),
    "count": Column("次数", "number", 8),
    "start": Column("开始时间", "time", 20),
    "end": Column("结束时间", "time", 20),
    "permit_id": Column("许可证号"),
    "on_route_pct": Column("在核准路线(%)", "number", 14),
    "inside_hours_pct": Column("许可时段内(%)", "number", 14),
    "origin_reached": Column("到达起点工地", "bool", 12),
    "destination_reached": Column("到达消纳场", "bool", 12),
    "compliant": Column("合规", "bool", 8),
    "name": Column("网格名称", width=16),
    "visited": Column("已巡查", "bool", 8),
    "first_visit": Column("首次到达", "time", 20),
    "last_visit": Column("最后到达", "time", 20),
    "inside_s": Column("区域内时间(秒)", "number", 14),
    "created_at": Column("派单时间", "time", 20),
    "created_by": Column("派单人", width=12),
    "lon": Column("经度 WGS-84", "number", 12),
    "lat": Column("纬度 WGS-84", "number", 12),
    "distance_m": Column("直线距离(m)", "number", 12),
    "note": Column("事件说明", width=40),
    "state": Column("处理状态", "state", 10),
    "command_status": Column("车载屏下发", width=12),
    # 12319 case report (api/cases.py)
    "step": Column("环节", width=10),
    "label": Column("名称", width=16),
    "key": Column("代码", width=14),
    "median_s": Column("中位用时(秒)", "number", 12),
    "p90_s": Column("P90用时(秒)", "number", 12),
    "max_s": Column("最长用时(秒)", "number", 12),
    "overdue": Column("超时案件", "number", 10),
    "open": Column("未结案", "number", 8),
    "closed": Column("已结案", "number", 8),
    "cancelled": Column("已撤销", "number", 8),
    "close_median_s": Column("结案中位用时(秒)", "number", 14),
    "dispatched": Column("派遣次数", "number", 10),
    "arrived": Column("到场次数", "number", 10),
    "arrived_gps": Column("GPS判定到场", "number", 12),
    "left_before_handled": Column("未处置离开", "number", 12),
    "arrive_median_s": Column("到场中位用时(秒)", "number", 14),
    "arrive_p90_s": Column("到场P90用时(秒)", "number", 14),
}


def column(key: str) -> Column:
    return COLUMNS.get(key) or Column(key)


def _local(value: Any, tz: ZoneInfo) -> datetime | None:
    if value is None or value == "":
        return None
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return dt.astimezone(tz).replace(tzinfo=None, microsecond=0)


def cell(kind: Kind, value: Any, tz: ZoneInfo) -> Any:
    """One value as a sheet shows it (``None`` stays empty)."""
    if value is None:
        return None
    if kind == "time":
        return _local(value, tz)
    if kind == "bool":
        return "是" if value else "否"
    if kind == "class":
        return CLASS_ZH.get(str(value), value)
    if kind == "alert_kind":
        return KIND_ZH.get(str(value), value)
    if kind == "state":
        return STATE_ZH.get(str(value), value)
    return value


def headers(keys: Sequence[str], timezone: str) -> list[str]:
    """Chinese headers; time columns name the zone their local times are in."""
    zone = "北京时间" if timezone in ("Asia/Shanghai", "Asia/Chongqing", "PRC") else timezone
    return [f"{c.header}({zone})" if c.kind == "time" else c.header for c in map(column, keys)]


def table_rows(keys: Sequence[str], rows: Sequence[Sequence[Any]], timezone: str) -> list[list[Any]]:
    tz = ZoneInfo(timezone)
    kinds = [column(k).kind for k in keys]
    return [[cell(k, v, tz) for k, v in zip(kinds, row, strict=True)] for row in rows]


def to_csv(keys: Sequence[str], rows: Sequence[Sequence[Any]], timezone: str) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(headers(keys, timezone))
    for row in table_rows(keys, rows, timezone):
        writer.writerow(["" if v is None else v.strftime("%Y-%m-%d %H:%M:%S") if isinstance(v, datetime) else v
                         for v in row])  # fmt: skip
    return (BOM + out.getvalue()).encode("utf-8")


def to_xlsx(keys: Sequence[str], rows: Sequence[Sequence[Any]], timezone: str, *, title: str) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = title[:31]
    ws.append(headers(keys, timezone))
    for row in table_rows(keys, rows, timezone):
        ws.append(row)
    bold, fill = Font(bold=True), PatternFill("solid", fgColor="DDE6F3")
    for i, key in enumerate(keys, start=1):
        c = ws.cell(row=1, column=i)
        c.font, c.fill, c.alignment = bold, fill, Alignment(horizontal="center")
        ws.column_dimensions[get_column_letter(i)].width = column(key).width + 2
        if column(key).kind == "time":
            for (v,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                v.number_format = "yyyy-mm-dd hh:mm:ss"
    ws.freeze_panes = "A2"
    if rows:
        ws.auto_filter.ref = ws.dimensions
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
