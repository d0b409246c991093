"""The fleet simulator behind ``tools/simulate.py``.

Pure modules (no clock, no network, no files except ``city.load``):
``geo`` (metric frame, paths), ``clock`` (local time, permit windows),
``city`` (geofences + road network), ``motion`` (kinematics along a path),
``fleet`` (vehicles and what each class does), ``inject`` (violations and
their ground truth), ``payload`` (noise and the three wire formats),
``simulation`` (the loop that turns all of it into publications).
``mqtt`` is the thin driver that publishes them.
"""
