-- Commands to JT/T 808 terminals (0x8300 text, 0x8201 position query,
-- 0x8103 parameters), queued per terminal until it is reachable; one row
-- per command with its status: queued -> sent -> acknowledged | failed |
-- timed_out. `body` is the command in EMQX's downlink JSON.
CREATE TABLE terminal_commands (
    id              bigserial PRIMARY KEY,
    vehicle_id      text        NOT NULL,
    phone           text        NOT NULL,          -- normalised terminal phone
    kind            text        NOT NULL,          -- text | position_query | report_interval
    msg_id          integer     NOT NULL,
    body            jsonb       NOT NULL,
    status          text        NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'sent', 'acknowledged', 'failed', 'timed_out')),
    attempts        integer     NOT NULL DEFAULT 0,
    transport       text,                          -- tcp (our gateway) | mqtt (EMQX's downlink topic)
    connection      text,                          -- the TCP connection it was written to
    msg_sn          integer,                       -- the platform sequence number it went out with
    ack_observable  boolean     NOT NULL DEFAULT true,
    result          integer,                       -- the terminal's answer (0x0001 result; 0 for 0x0201)
    error           text,
    dispatch_id     bigint,
    created_by      text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    acked_at        timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX terminal_commands_open ON terminal_commands (phone, id) WHERE status IN ('queued', 'sent');
CREATE INDEX terminal_commands_by_vehicle ON terminal_commands (vehicle_id, id DESC);
CREATE INDEX terminal_commands_by_dispatch ON terminal_commands (dispatch_id) WHERE dispatch_id IS NOT NULL;

-- What the gateway knows of each terminal, written every few seconds.
CREATE TABLE terminal_health (
    phone             text PRIMARY KEY,            -- normalised
    header_phone      text        NOT NULL DEFAULT '',
    vehicle_id        text,
    transport         text        NOT NULL DEFAULT 'tcp',
    mqtt_clientid     text        NOT NULL DEFAULT '',
    peer              text        NOT NULL DEFAULT '',
    connected         boolean     NOT NULL DEFAULT false,
    state             text        NOT NULL,
    close_reason      text        NOT NULL DEFAULT '',
    edition           smallint,
    proto_ver         smallint,
    plate             text        NOT NULL DEFAULT '',
    model             text        NOT NULL DEFAULT '',
    imei              text        NOT NULL DEFAULT '',
    software_version  text        NOT NULL DEFAULT '',
    first_seen        timestamptz,
    last_connect      timestamptz,
    last_disconnect   timestamptz,
    last_frame        timestamptz,
    last_drop         text        NOT NULL DEFAULT '',
    last_drop_at      timestamptz,
    connections       bigint      NOT NULL DEFAULT 0,
    drops             jsonb       NOT NULL DEFAULT '{}',
    tolerated         jsonb       NOT NULL DEFAULT '{}',
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX terminal_health_by_vehicle ON terminal_health (vehicle_id);
