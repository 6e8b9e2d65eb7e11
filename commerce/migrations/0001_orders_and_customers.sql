-- Orders and customer profiles. One text for PostgreSQL and SQLite: only types and clauses both
-- understand (BIGINT, TEXT, composite keys, ON DELETE CASCADE). Times are ms since the Unix
-- epoch and money integer minor units, as everywhere in RetailMind.

CREATE TABLE orders (
    order_id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    request_sha256 TEXT NOT NULL,
    customer_id TEXT,
    anonymous_id TEXT,
    placed_at BIGINT NOT NULL,
    currency TEXT NOT NULL,
    subtotal_minor BIGINT NOT NULL,
    discount_minor BIGINT NOT NULL,
    tax_minor BIGINT NOT NULL,
    shipping_minor BIGINT NOT NULL,
    total_minor BIGINT NOT NULL,
    shipping_method TEXT,
    shipping_country TEXT,
    shipping_postal_code TEXT,
    payment_method TEXT NOT NULL,
    card_brand TEXT,
    card_last4 TEXT,
    payment_status TEXT NOT NULL,
    page_url TEXT,
    status TEXT NOT NULL,
    -- 1 once the order's purchase event is on the stream (the outbox flag).
    emitted BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX orders_by_customer ON orders (customer_id);

CREATE TABLE order_lines (
    order_id TEXT NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    line_no BIGINT NOT NULL,
    product_id TEXT NOT NULL,
    name TEXT NOT NULL,
    category TEXT,
    unit_price_minor BIGINT NOT NULL,
    quantity BIGINT NOT NULL,
    discount_minor BIGINT NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE order_status_history (
    order_id TEXT NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    status TEXT NOT NULL,
    at BIGINT NOT NULL,
    note TEXT,
    PRIMARY KEY (order_id, seq)
);

CREATE TABLE customers (
    customer_id TEXT PRIMARY KEY,
    traits TEXT NOT NULL,
    email_sha256 TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A browser may be shared (two customers on one laptop), so the key is the pair.
CREATE TABLE customer_identities (
    customer_id TEXT NOT NULL,
    anonymous_id TEXT NOT NULL,
    linked_at BIGINT NOT NULL,
    PRIMARY KEY (customer_id, anonymous_id)
);

CREATE INDEX identities_by_anonymous_id ON customer_identities (anonymous_id);

-- Keyed by event id so a replayed stream counts a view once.
CREATE TABLE customer_category_views (
    customer_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    category TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (customer_id, event_id)
);

CREATE TABLE customer_sessions (
    customer_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    anonymous_id TEXT NOT NULL,
    start_at BIGINT NOT NULL,
    end_at BIGINT NOT NULL,
    page_views BIGINT NOT NULL,
    events BIGINT NOT NULL,
    purchases BIGINT NOT NULL,
    revenue_minor BIGINT NOT NULL,
    device TEXT NOT NULL,
    entry_url TEXT NOT NULL,
    utm_source TEXT,
    PRIMARY KEY (customer_id, session_id)
);

-- Right-to-be-forgotten requests, for the lake job that removes the customer's rows there.
CREATE TABLE deletion_requests (
    request_id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    anonymous_ids TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    lake_done_at BIGINT
);
