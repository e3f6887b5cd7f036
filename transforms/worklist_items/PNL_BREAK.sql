-- PNL_BREAK (DOMAIN §9.1, §8.2): a book whose desk-reported P&L differs from the explained P&L
-- beyond tolerance (pnl_book pnl_break). Key: book; value: |unexplained|. Waits for pnl_book.
WITH breaks AS (
    SELECT *
    FROM main.pnl_book
    WHERE as_of_date = getvariable('as_of_date') AND pnl_break
),

final AS (
    SELECT
        book AS natural_key,
        book,
        abs(unexplained_usd) AS value_usd,
        'FIRM' AS calendar_id,
        'P&L of book ' || book || ': desk reported ' || round(reported_pnl_usd, 0) || ' USD, explained '
        || round(total_pnl_usd, 0) || ' USD, unexplained ' || round(unexplained_usd, 0) || ' USD' AS description,
        CAST(NULL AS DATE) AS condition_since
    FROM breaks
)

SELECT * FROM final
