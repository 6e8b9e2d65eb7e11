-- A session summary replaces the visitor's other rows within its span (a session it absorbed
-- when a late event joined them): found by visitor and start instead of reading the table.
CREATE INDEX customer_sessions_by_visitor ON customer_sessions (anonymous_id, start_at);
