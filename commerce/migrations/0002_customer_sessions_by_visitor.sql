-- A session another one absorbed (a late event joined them) is deleted by the visitor's id and
-- its own; without this index that delete would read the whole table.
CREATE INDEX customer_sessions_by_visitor ON customer_sessions (anonymous_id, session_id);
