-- Segments: saved audience filters (server/segments/filters.py is the tree, compile.py its SQL).
CREATE TABLE segments (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    app_id      uuid NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name        text NOT NULL,
    filter      jsonb NOT NULL,
    created_by  uuid REFERENCES admins(id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX segments_app_idx ON segments (app_id, created_at DESC);

-- A version string as numbers part by part, trailing zero parts dropped, so that arrays compare like
-- versions: '9.0' -> {9} < '10.0' -> {10}; '17.4.0' = '17.4'; '1.2.3-beta' reads as 1.2.3; no digits: NULL.
CREATE FUNCTION segment_version(v text) RETURNS numeric[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN string_to_array(regexp_replace(substring(v FROM '^\s*[vV]?([0-9]+(?:\.[0-9]+)*)'), '(\.0+)+$', ''),
                           '.')::numeric[];

-- An attribute holding an ISO 8601 date or date-time, as an instant (UTC when it names no offset);
-- anything else, or a date that does not exist, is NULL rather than an error mid-query.
CREATE FUNCTION segment_attr_time(v text) RETURNS timestamptz
    LANGUAGE plpgsql STABLE STRICT PARALLEL SAFE AS $$
BEGIN
    IF v !~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z|[+-](0[0-9]|1[0-4])(:?[0-5][0-9])?)?)?$' THEN
        RETURN NULL;
    END IF;
    IF v ~ '[T ][0-9:.]+(Z|[+-][0-9]{2}(:?[0-9]{2})?)$' THEN
        RETURN v::timestamptz;
    END IF;
    RETURN v::timestamp AT TIME ZONE 'UTC';
EXCEPTION WHEN others THEN  -- whatever the cast refuses (2026-02-30, 25:00, +99): not a time
    RETURN NULL;
END $$;
