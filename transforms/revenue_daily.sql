-- The commission-revenue ledger: what the trade events delivered on the business date changed in
-- the recognised revenue, by trade date and book, and by trade date and client. A trade counts
-- at its current version (highest delivered so far); a CANCEL current version counts nothing.
-- For every trade touched today: + the version now current, − the version current before today.
-- Summing the ledger over business dates up to D therefore gives the revenue of the non-cancelled
-- trades as known on D, and a date's work is that date's events (plus their earlier versions).
WITH delivered AS (
    SELECT trade_id, version, business_date, event_type, trade_date, book, client_id, currency, commission
    FROM core.trades
    WHERE business_date = getvariable('as_of_date')
),

earlier AS MATERIALIZED (
    -- earlier deliveries of the trades touched today (DuckDB prunes the history by the range of
    -- today's trade ids: amendments concern recent trades)
    SELECT trade_id, version, business_date, event_type, trade_date, book, client_id, currency, commission
    FROM core.trades
    WHERE business_date < getvariable('as_of_date')
      AND trade_id IN (SELECT trade_id FROM delivered)
),

several AS MATERIALIZED (
    -- trades with more than one version delivered up to today; every other trade touched today is
    -- a new trade whose only row is both its current version and its first
    SELECT trade_id FROM delivered GROUP BY trade_id HAVING count(*) > 1
    UNION
    SELECT DISTINCT trade_id FROM earlier
),

versions AS (
    SELECT * FROM delivered SEMI JOIN several USING (trade_id)
    UNION ALL
    SELECT * FROM earlier
),

current_and_before AS MATERIALIZED (
    -- a version re-delivered later with the same number: the later delivery wins
    SELECT
        trade_id,
        arg_max(versions, (version, business_date)) AS now,
        arg_max(versions, (version, business_date)) FILTER (WHERE business_date < getvariable('as_of_date')) AS before
    FROM versions
    GROUP BY trade_id
    UNION ALL
    SELECT trade_id,
           struct_pack(trade_id, version, business_date, event_type, trade_date, book, client_id, currency, commission),
           NULL
    FROM delivered
    ANTI JOIN several USING (trade_id)
),

legs AS (
    -- only trades whose current version came today (an older version re-sent changes nothing)
    SELECT now.trade_date, now.book, now.client_id, now.currency, now.commission, 1 AS sign
    FROM current_and_before
    WHERE now.business_date = getvariable('as_of_date') AND now.event_type <> 'CANCEL'
    UNION ALL
    SELECT before.trade_date, before.book, before.client_id, before.currency, before.commission, -1 AS sign
    FROM current_and_before
    WHERE now.business_date = getvariable('as_of_date') AND before IS NOT NULL AND before.event_type <> 'CANCEL'
),

rates AS (
    -- the fx of each (currency, trade date) the legs need, as known on the business date
    -- (an equality join back to the legs: a handful of rows, whatever the trade volume)
    SELECT n.currency, n.trade_date, fx.usd_per_unit
    FROM (SELECT DISTINCT currency, trade_date FROM legs) n
    JOIN core.fx_rates_known(getvariable('as_of_date'), NULL) fx
      ON fx.currency = n.currency AND n.trade_date >= fx.rate_date AND n.trade_date < fx.valid_until
),

legs_usd AS MATERIALIZED (
    -- converted with the fx of the trade date
    SELECT l.trade_date, l.book, l.client_id, l.sign, l.sign * l.commission * r.usd_per_unit AS revenue_usd
    FROM legs l
    LEFT JOIN rates r USING (currency, trade_date)
),

client_keys AS (
    SELECT client_id, client_key(client_id) AS client_key
    FROM (SELECT DISTINCT client_id FROM legs_usd)
),

final AS (
    SELECT getvariable('as_of_date') AS business_date, trade_date, 'BOOK' AS dimension, book AS member,
           CAST(sum(CAST(revenue_usd AS DECIMAL(38, 12))) AS DOUBLE) AS revenue_change_usd, CAST(sum(sign) AS BIGINT) AS trades_change
    FROM legs_usd
    GROUP BY trade_date, book
    UNION ALL
    SELECT getvariable('as_of_date'), l.trade_date, 'CLIENT', k.client_key,
           CAST(sum(CAST(l.revenue_usd AS DECIMAL(38, 12))) AS DOUBLE), CAST(sum(l.sign) AS BIGINT)
    FROM legs_usd l
    JOIN client_keys k USING (client_id)
    GROUP BY l.trade_date, k.client_key
)

SELECT * FROM final ORDER BY dimension, member, trade_date
