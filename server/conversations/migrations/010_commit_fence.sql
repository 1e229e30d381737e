-- Lets a single-statement group commit abort itself when a conversation's seq fence fails.
CREATE FUNCTION replyhq_stale(reason text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%', reason USING ERRCODE = 'P0001';
END
$$;
