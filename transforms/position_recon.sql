-- Client position reconciliation (DOMAIN §8.4): each client's custody position at a custodian
-- on the date against the previous business date's plus what settled in between: the change of
-- settled_quantity of every settlement instruction of the client's trades at that custodian
-- delivered after p (its latest record up to D against its latest up to p; BUY adds, SELL
-- subtracts). A position that is new with nothing settled into it is NO_PRIOR, not a break;
-- so is every position when the warehouse has no client custody of p (the first date).
-- Clients are published under client_key, with their segment and relationship manager.
WITH previous_business_date AS (
    SELECT core.previous_business_day('FIRM', getvariable('as_of_date')) AS previous_date
),

prior_custody AS (
    -- whether the warehouse has the client custody of p at all (not on the first date it builds)
    SELECT count(*) > 0 AS known
    FROM core.positions
    WHERE holder_type = 'CLIENT' AND business_date = (SELECT previous_date FROM previous_business_date)
),

custody AS (
    SELECT
        holder_id AS client_id,
        instrument_id,
        custodian,
        -- plain DOUBLE sums: one row per key and date (a DECIMAL cast of a large double is not exact)
        sum(quantity) FILTER (WHERE business_date < getvariable('as_of_date')) AS quantity_previous,
        sum(quantity) FILTER (WHERE business_date = getvariable('as_of_date')) AS quantity_today
    FROM core.positions
    WHERE holder_type = 'CLIENT'
      AND (business_date = getvariable('as_of_date') OR business_date = (SELECT previous_date FROM previous_business_date))
    GROUP BY ALL
),

moved AS (
    -- instructions with a record delivered after p
    SELECT DISTINCT settlement_id
    FROM core.settlements
    WHERE business_date > (SELECT previous_date FROM previous_business_date)
      AND business_date <= getvariable('as_of_date')
),

settled_today AS (
    SELECT
        settlement_id,
        arg_max(trade_id, business_date) AS trade_id,
        arg_max(custodian, business_date) AS custodian,
        arg_max(settled_quantity, business_date) AS settled_quantity
    FROM core.settlements
    WHERE business_date <= getvariable('as_of_date') AND settlement_id IN (SELECT settlement_id FROM moved)
    GROUP BY settlement_id
),

settled_before AS (
    SELECT settlement_id, arg_max(settled_quantity, business_date) AS settled_quantity
    FROM core.settlements
    WHERE business_date <= (SELECT previous_date FROM previous_business_date)
      AND settlement_id IN (SELECT settlement_id FROM moved)
    GROUP BY settlement_id
),

trades AS (
    -- the client, instrument and side of each trade (its latest version delivered up to D)
    SELECT
        trade_id,
        arg_max(client_id, version) AS client_id,
        arg_max(instrument_id, version) AS instrument_id,
        arg_max(side, version) AS side
    FROM core.trades
    WHERE business_date <= getvariable('as_of_date') AND trade_id IN (SELECT trade_id FROM settled_today)
    GROUP BY trade_id
),

movements AS (
    SELECT
        t.client_id,
        t.instrument_id,
        s.custodian,
        sum(CASE WHEN t.side = 'BUY' THEN 1 ELSE -1 END * (s.settled_quantity - coalesce(b.settled_quantity, 0))) AS settled_change,
        count(*) FILTER (WHERE s.settled_quantity <> coalesce(b.settled_quantity, 0)) AS settlements_moved
    FROM settled_today s
    JOIN trades t USING (trade_id)
    LEFT JOIN settled_before b USING (settlement_id)
    GROUP BY ALL
),

positions AS (
    SELECT
        coalesce(c.client_id, m.client_id) AS client_id,
        coalesce(c.instrument_id, m.instrument_id) AS instrument_id,
        coalesce(c.custodian, m.custodian) AS custodian,
        c.quantity_previous,
        c.quantity_today,
        coalesce(m.settled_change, 0) AS settled_change,
        coalesce(m.settlements_moved, 0) AS settlements_moved
    FROM custody c
    FULL OUTER JOIN movements m
      ON m.client_id = c.client_id AND m.instrument_id = c.instrument_id AND m.custodian = c.custodian
),

clients AS (
    SELECT client_id, segment, relationship_manager_id
    FROM core.clients
    WHERE business_date = (SELECT max(business_date) FROM core.clients WHERE business_date <= getvariable('as_of_date'))
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        client_key(p.client_id) AS client_key,
        k.segment,
        k.relationship_manager_id,
        p.instrument_id,
        p.custodian,
        (SELECT previous_date FROM previous_business_date) AS previous_date,
        coalesce(p.quantity_previous, 0) AS previous_quantity,
        p.settled_change,
        p.settlements_moved,
        coalesce(p.quantity_previous, 0) + p.settled_change AS expected_quantity,
        coalesce(p.quantity_today, 0) AS actual_quantity,
        -- to a millionth of a unit: quantities are compared, not the last bits of their float sums
        round(coalesce(p.quantity_today, 0) - (coalesce(p.quantity_previous, 0) + p.settled_change), 6) AS difference,
        CASE
            WHEN NOT (SELECT known FROM prior_custody) THEN 'NO_PRIOR'
            WHEN p.quantity_previous IS NULL AND p.settlements_moved = 0 AND p.quantity_today IS NOT NULL THEN 'NO_PRIOR'
            WHEN abs(round(coalesce(p.quantity_today, 0) - (coalesce(p.quantity_previous, 0) + p.settled_change), 6))
                <= core.param('POSITION_TOLERANCE', 'ALL') THEN 'MATCHED'
            ELSE 'BREAK'
        END AS status
    FROM positions p
    LEFT JOIN clients k USING (client_id)
)

SELECT * FROM final ORDER BY client_key, instrument_id, custodian
