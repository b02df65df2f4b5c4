-- The drill lab's trading database: the platform's tables (schema public) and the external
-- broker's own books (schema broker), loaded by irlib/lab/seed.py in one transaction.
-- Keys and indexes of the big tables come after the marker below: seed.py creates them once
-- the bulk load is done, which is several times faster than maintaining them row by row.

CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

CREATE TABLE strategies (
    id          integer PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    paused      boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id               bigserial,
    strategy_id      integer NOT NULL,
    account          text NOT NULL,
    symbol           text NOT NULL,
    side             text NOT NULL CHECK (side IN ('buy', 'sell')),
    qty              integer NOT NULL CHECK (qty > 0),
    price            numeric(12, 4),
    state            text NOT NULL
                     CHECK (state IN ('new', 'submitted', 'filled', 'rejected', 'cancelled')),
    broker_order_id  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE execution_reports (
    id              bigserial,
    order_id        bigint NOT NULL,
    broker_fill_id  text NOT NULL,
    qty             integer NOT NULL,
    price           numeric(12, 4) NOT NULL,
    executed_at     timestamptz NOT NULL
);

CREATE TABLE positions (
    account     text NOT NULL,
    symbol      text NOT NULL,
    qty         integer NOT NULL,
    avg_price   numeric(12, 4) NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account, symbol)
);

CREATE TABLE market_data_ticks (
    symbol  text NOT NULL,
    ts      timestamptz NOT NULL,
    bid     numeric(12, 4) NOT NULL,
    ask     numeric(12, 4) NOT NULL,
    last    numeric(12, 4) NOT NULL,
    volume  bigint NOT NULL
);

CREATE TABLE option_quotes (
    symbol       text NOT NULL,
    ts           timestamptz NOT NULL,
    expiry       date NOT NULL,
    strike       numeric(12, 4) NOT NULL,
    option_type  text NOT NULL CHECK (option_type IN ('call', 'put')),
    bid          numeric(12, 4) NOT NULL,
    ask          numeric(12, 4) NOT NULL,
    implied_vol  double precision NOT NULL,
    underlying   numeric(12, 4) NOT NULL  -- the underlying's price when quoted
);

CREATE TABLE calibrations (
    id                 serial PRIMARY KEY,
    symbol             text NOT NULL,
    model              text NOT NULL DEFAULT 'heston',
    params             jsonb NOT NULL,
    rmse               double precision,
    iterations         integer NOT NULL,
    converged          boolean NOT NULL,
    calibrated_at      timestamptz NOT NULL DEFAULT now(),
    data_window_start  timestamptz NOT NULL,
    data_window_end    timestamptz NOT NULL,
    n_quotes           integer,
    duration_s         double precision,
    message            text  -- the optimiser's word, or why the fit was rejected
);

CREATE SCHEMA broker;

CREATE TABLE broker.accounts (
    account_id  text PRIMARY KEY,
    name        text NOT NULL,
    currency    text NOT NULL DEFAULT 'USD',
    cash        numeric(16, 2) NOT NULL,
    status      text NOT NULL DEFAULT 'active',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE broker.orders (
    order_id         text PRIMARY KEY,
    account_id       text NOT NULL REFERENCES broker.accounts,
    client_order_id  text,
    symbol           text NOT NULL,
    side             text NOT NULL CHECK (side IN ('buy', 'sell')),
    qty              integer NOT NULL CHECK (qty > 0),
    limit_price      numeric(12, 4),
    status           text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE broker.fills (
    fill_id      text PRIMARY KEY,
    order_id     text NOT NULL REFERENCES broker.orders,
    qty          integer NOT NULL,
    price        numeric(12, 4) NOT NULL,
    executed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE broker.positions (
    account_id  text NOT NULL REFERENCES broker.accounts,
    symbol      text NOT NULL,
    qty         integer NOT NULL,
    avg_price   numeric(12, 4) NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, symbol)
);

-- @after-load

ALTER TABLE orders ADD CONSTRAINT orders_pkey PRIMARY KEY (id);
ALTER TABLE execution_reports ADD CONSTRAINT execution_reports_pkey PRIMARY KEY (id);

-- The API's "recent orders of a symbol" query: the latency drill drops this one.
CREATE INDEX idx_orders_symbol_created_at ON orders (symbol, created_at);
-- Open orders, newest first (GET /v1/orders?state=new): few, so a small partial index.
CREATE INDEX idx_orders_open ON orders (id) WHERE state IN ('new', 'submitted');
ALTER TABLE orders ADD CONSTRAINT orders_strategy_id_fkey
    FOREIGN KEY (strategy_id) REFERENCES strategies (id);

CREATE INDEX idx_execution_reports_order_id ON execution_reports (order_id);
ALTER TABLE execution_reports ADD CONSTRAINT execution_reports_order_id_fkey
    FOREIGN KEY (order_id) REFERENCES orders (id);

CREATE INDEX idx_market_data_ticks_symbol_ts ON market_data_ticks (symbol, ts DESC);
CREATE INDEX idx_market_data_ticks_ts ON market_data_ticks (ts);
CREATE INDEX idx_option_quotes_symbol_ts ON option_quotes (symbol, ts DESC);
CREATE INDEX idx_calibrations_symbol_calibrated_at ON calibrations (symbol, calibrated_at DESC);
CREATE INDEX idx_broker_orders_account_created_at ON broker.orders (account_id, created_at);
CREATE INDEX idx_broker_fills_order_id ON broker.fills (order_id);

-- P1 Execution Failures: why the broker rejected an order (NULL when it did not).
ALTER TABLE broker.orders ADD COLUMN reject_reason text;
CREATE INDEX idx_broker_fills_executed_at ON broker.fills (executed_at);
