-- The currency of a session summary's revenue (that of the session's first order): amounts in
-- different currencies are not added up. Rows written before say none.
ALTER TABLE customer_sessions ADD COLUMN currency TEXT;
