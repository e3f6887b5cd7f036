-- The reconciliation of the business date summed by book, status and break age: how many trades
-- and how much notional sit in each status, and each book's match rate (matched / the trades of
-- the book in the recon window that are not AWAITING_BO: DOMAIN §12).
WITH recon AS (
    SELECT
        as_of_date,
        coalesce(book, 'NO_FO_TRADE') AS book,  -- a settlement without a front-office trade has no book
        status,
        coalesce(age_bucket, 'n/a') AS age_bucket,  -- MATCHED and AWAITING_BO are not aged
        notional_usd
    FROM main.ops_trade_recon_between(getvariable('as_of_date'), getvariable('as_of_date'))
),

by_status_and_age AS (
    SELECT as_of_date, book, status, age_bucket, count(*) AS trades, CAST(sum(CAST(notional_usd AS DECIMAL(38, 12))) AS DOUBLE) AS notional_usd
    FROM recon
    GROUP BY ALL
),

by_book AS (
    SELECT
        book,
        count(*) AS book_trades,
        count(*) FILTER (WHERE status = 'MATCHED') AS book_matched,
        count(*) FILTER (WHERE status <> 'AWAITING_BO') AS book_decided
    FROM recon
    GROUP BY book
),

final AS (
    SELECT
        s.as_of_date,
        s.book,
        s.status,
        s.age_bucket,
        -- the statuses in the order of precedence of the recon rules (DOMAIN §4.4)
        CASE s.status
            WHEN 'BO_ONLY' THEN 1 WHEN 'AWAITING_BO' THEN 2 WHEN 'FO_ONLY' THEN 3
            WHEN 'VERSION_BREAK' THEN 4 WHEN 'QTY_BREAK' THEN 5 WHEN 'AMOUNT_BREAK' THEN 6
            WHEN 'MATCHED' THEN 7
        END AS status_order,
        s.status NOT IN ('MATCHED', 'AWAITING_BO') AS is_break,
        s.trades,
        s.notional_usd,
        b.book_trades,
        b.book_matched,
        -- DOMAIN §12: trades awaiting the back office are not in the denominator
        b.book_matched / nullif(b.book_decided, 0) AS match_rate
    FROM by_status_and_age s
    JOIN by_book b USING (book)
)

SELECT * FROM final ORDER BY book, status_order, age_bucket
