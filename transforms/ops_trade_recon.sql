-- Front-to-back reconciliation of every trade in the recon window, as known on the business date:
-- each trade's state (status, both sides, first_seen_date). The build stores a state once for the
-- run of dates it holds (ops_trade_recon_spans, warehouse/marts.sql); the ops_trade_recon view
-- adds what changes every date (as_of_date, notional_usd at the date's FX, age_bd, age_bucket).
--
-- Front: a trade's current version = its highest version delivered up to the date.
-- Back: a settlement's current state = its latest delivered row; a trade's current settlement is
-- its live one (not CANCELLED; one at a time: a re-booking cancels the earlier instruction), else
-- its latest cancelled one.
-- Window: trades with trade_date in the 20 business dates up to the date, plus settlements whose
-- trade the front office does not know, with intended_settle_date in those 20 business dates.
--
-- Ageing is recomputed from the core tables, so a backfill or a rerun of any date gives the same
-- ages as the daily run. A trade's status can only change on a few "change dates": when a front
-- or back row for it is delivered, when its settlement's intended date enters the window, and on
-- the second business day after trade_date (when AWAITING_BO turns into FO_ONLY). The status is
-- evaluated on those dates only (a handful per trade), with the same rules as for the as-of date;
-- first_seen_date is the first change date of the current run of break statuses. Nothing in the
-- window can be older than the window, so the history read is bounded by it.
--
-- Incremental: when the previous business date's rows are known to be current (carry_from_date,
-- set by the build), only the trades that can differ from them are evaluated as above (touched);
-- every other trade's state is the previous date's (carried). Both ways give the
-- same rows (tests/test_recon.py compares them date by date); the incremental one costs what
-- the date's deliveries cost instead of the whole window's history (~10x less at 20 dates).
--
-- Chunks: a date with many trades is built in chunks of trades (the build sets chunk_count and
-- chunk; yml `chunks`), each from its share of the events: every figure here is per trade, so
-- the chunks' rows together are the date's rows. in_chunk(trade_id) (warehouse/marts.sql) is the
-- filter.
--
-- Business dates are FIRM business dates (the core.* calendar macros, warehouse/calendar.sql):
-- core.bd_number numbers them consecutively (a holiday or weekend day counts as the business
-- date before it), core.add_business_days steps over them.
WITH bounds AS (
    -- the window (20 business dates up to the date) and a lookback of 40 more business dates,
    -- enough for any settlement instruction or front-office booking of a trade in the window;
    -- carry_from_date: the previous business date when its rows may be carried (the build sets
    -- it only if they were built after every load of a date up to it), else NULL
    SELECT
        w.*,
        core.add_business_days('FIRM', w.as_of_date, -60) AS previous_lookback_start,
        CAST(getvariable('carry_from_date') AS DATE) AS carry_from_date
    FROM core.recon_window(getvariable('as_of_date')) w
),

previous AS (
    -- the previous business date's states (none when every trade is evaluated): its spans, read
    -- with the date as a constant so that only the spans that can hold on it are scanned
    SELECT p.* EXCLUDE (valid_from, valid_to, run_id, loaded_at)
    FROM main.ops_trade_recon_spans p, bounds b
    WHERE p.valid_from <= CAST(getvariable('carry_from_date') AS DATE)
      AND coalesce(p.valid_to, DATE '9999-12-31') >= CAST(getvariable('carry_from_date') AS DATE)
      AND in_chunk(p.trade_id)
),

deliveries AS (
    -- every front and back row, with the date that brings its trade into the window (the trade
    -- date of a booking, the intended date of an instruction)
    SELECT trade_id, business_date, trade_date AS window_date FROM core.trades
    UNION ALL
    SELECT trade_id, business_date, intended_settle_date FROM core.settlements
),

touched AS (
    -- the trades of the chunk whose row can differ from the previous date's: a front or back row
    -- delivered on the date, or delivered on the date that leaves the lookback; a trade_date or an
    -- instruction's intended date that enters the window; AWAITING_BO, which may turn FO_ONLY.
    -- Every other trade's status and first_seen_date are the previous date's (its change dates
    -- in the window are the same), so its row is carried; a superset here only costs time.
    -- None when nothing is carried: the constant condition lets DuckDB skip the scans.
    SELECT e.trade_id
    FROM deliveries e, bounds b
    WHERE CAST(getvariable('carry_from_date') AS DATE) IS NOT NULL
      AND (e.business_date = b.as_of_date
           OR (e.business_date >= b.previous_lookback_start AND e.business_date < b.lookback_start)
           OR (e.business_date BETWEEN b.lookback_start AND b.as_of_date
               AND e.window_date > b.carry_from_date AND e.window_date <= b.as_of_date))
      AND in_chunk(e.trade_id)
    UNION
    SELECT trade_id FROM previous WHERE status = 'AWAITING_BO'
),

front_events AS (
    -- the front rows delivered in the lookback (only the touched trades' when carrying), with
    -- only what the status needs: kept narrow, as the work at 10M trades a day is memory-bound
    SELECT
        t.business_date AS delivered_on,
        t.trade_id, t.version, t.event_type, t.trade_date, t.quantity, t.price,
        core.bd_number('FIRM', t.trade_date) AS trade_bd
    FROM core.trades t, bounds b
    WHERE t.business_date BETWEEN b.lookback_start AND b.as_of_date
      AND (b.carry_from_date IS NULL OR t.trade_id IN (SELECT trade_id FROM touched))
      AND in_chunk(t.trade_id)
),

back_events AS (
    SELECT
        s.business_date AS delivered_on,
        s.settlement_id, s.trade_id, s.trade_version, s.quantity, s.settlement_amount,
        s.intended_settle_date, s.status
    FROM core.settlements s, bounds b
    WHERE s.business_date BETWEEN b.lookback_start AND b.as_of_date
      AND (b.carry_from_date IS NULL OR s.trade_id IN (SELECT trade_id FROM touched))
      AND in_chunk(s.trade_id)
),

-- "The row with the highest key" is arg_max(row, key) over a group throughout: a hash
-- aggregate, which spills to disk, where a window (row_number() = 1) holds whole partitions.

front_now AS (
    -- each trade's current version: its highest, the latest delivered among equal versions
    SELECT trade_id, arg_max(trade_date, (version, delivered_on)) AS trade_date
    FROM front_events
    GROUP BY trade_id
),

back_now AS (
    -- each settlement's latest delivered row
    SELECT settlement_id,
           arg_max({'trade_id': trade_id, 'intended_settle_date': intended_settle_date}, delivered_on) AS latest
    FROM back_events
    GROUP BY settlement_id
),

trades_in_window AS (
    SELECT f.trade_id
    FROM front_now f, bounds b
    WHERE f.trade_date BETWEEN b.window_start AND b.as_of_date
),

settlements_without_trade AS (
    SELECT DISTINCT s.latest.trade_id AS trade_id
    FROM back_now s, bounds b
    WHERE s.latest.intended_settle_date BETWEEN b.window_start AND b.as_of_date
      AND NOT EXISTS (SELECT 1 FROM front_events f WHERE f.trade_id = s.latest.trade_id)
),

candidates AS (
    SELECT trade_id FROM trades_in_window
    UNION
    SELECT trade_id FROM settlements_without_trade
),

change_dates AS (
    -- the dates on which a candidate's status can change, within the window
    SELECT DISTINCT c.trade_id, x.change_date
    FROM candidates c
    JOIN (
        SELECT trade_id, delivered_on AS change_date FROM front_events
        UNION ALL
        -- the second business day after trade_date: AWAITING_BO becomes FO_ONLY
        SELECT trade_id, core.add_business_days('FIRM', trade_date, 2)
        FROM front_events
        UNION ALL
        SELECT trade_id, delivered_on FROM back_events
        UNION ALL
        -- an instruction without a trade enters the window on its intended date (or the next
        -- business date: the first after the day before it)
        SELECT trade_id, core.add_business_days('FIRM', intended_settle_date - 1, 1)
        FROM back_events
        UNION ALL
        SELECT trade_id, as_of_date FROM candidates, bounds
    ) x ON x.trade_id = c.trade_id
    , bounds b
    WHERE x.change_date BETWEEN b.window_start AND b.as_of_date
),

front_at AS (
    -- the trade's highest version delivered up to each change date
    SELECT
        d.trade_id,
        d.change_date,
        arg_max({'version': f.version, 'event_type': f.event_type, 'trade_bd': f.trade_bd,
                 'quantity': f.quantity, 'price': f.price},
                (f.version, f.delivered_on)) AS front
    FROM change_dates d
    JOIN front_events f ON f.trade_id = d.trade_id AND f.delivered_on <= d.change_date
    GROUP BY d.trade_id, d.change_date
),

settlement_states_at AS (
    -- each settlement's latest row delivered up to each change date
    SELECT
        d.trade_id,
        d.change_date,
        s.settlement_id,
        arg_max({'trade_version': s.trade_version, 'quantity': s.quantity,
                 'settlement_amount': s.settlement_amount, 'intended_settle_date': s.intended_settle_date,
                 'status': s.status, 'delivered_on': s.delivered_on},
                s.delivered_on) AS state
    FROM change_dates d
    JOIN back_events s ON s.trade_id = d.trade_id AND s.delivered_on <= d.change_date
    GROUP BY d.trade_id, d.change_date, s.settlement_id
),

back_at AS (
    -- the trade's current settlement: the live one, else the latest cancelled one
    SELECT
        trade_id,
        change_date,
        arg_max(state, (state.status <> 'CANCELLED', state.delivered_on, settlement_id)) AS back
    FROM settlement_states_at
    GROUP BY trade_id, change_date
),

sides_at AS (
    SELECT
        d.trade_id,
        d.change_date,
        core.bd_number('FIRM', d.change_date) AS change_bd,
        f.front.version AS front_version,
        f.front.trade_bd AS trade_bd,
        f.front.quantity AS front_quantity,
        f.front.quantity * f.front.price AS front_amount,
        f.trade_id IS NOT NULL AND f.front.event_type <> 'CANCEL' AS front_live,
        f.trade_id IS NOT NULL AND f.front.event_type = 'CANCEL' AS front_cancelled,
        s.back.trade_version AS back_version,
        s.back.quantity AS back_quantity,
        s.back.settlement_amount AS back_amount,
        s.back.intended_settle_date AS intended_settle_date,
        s.trade_id IS NOT NULL AND s.back.status <> 'CANCELLED' AS back_live,
        s.trade_id IS NOT NULL AS back_known
    FROM change_dates d
    LEFT JOIN front_at f ON f.trade_id = d.trade_id AND f.change_date = d.change_date
    LEFT JOIN back_at s ON s.trade_id = d.trade_id AND s.change_date = d.change_date
),

status_at AS (
    -- the status each change date would have had as its own as-of date (ABSENT: not in the recon)
    SELECT
        trade_id,
        change_date,
        CASE
            -- a trade cancelled on the front with no settlement is out of the window
            WHEN front_version IS NOT NULL AND NOT (front_cancelled AND NOT back_known)
                 AND trade_bd BETWEEN change_bd - 19 AND change_bd THEN 'IN'
            WHEN front_version IS NULL AND back_known
                 AND intended_settle_date <= change_date
                 AND intended_settle_date >= core.add_business_days('FIRM', change_date, -19) THEN 'IN'
            ELSE 'OUT'
        END AS presence,
        CASE
            WHEN back_live AND NOT front_live THEN 'BO_ONLY'
            WHEN front_live AND NOT back_live AND change_bd - trade_bd <= 1 THEN 'AWAITING_BO'
            WHEN front_live AND NOT back_live THEN 'FO_ONLY'
            WHEN front_live AND back_version <> front_version THEN 'VERSION_BREAK'
            WHEN front_live AND back_quantity <> front_quantity THEN 'QTY_BREAK'
            WHEN front_live AND abs(front_amount - back_amount) > greatest(0.01, 1e-6 * abs(front_amount)) THEN 'AMOUNT_BREAK'
            ELSE 'MATCHED'
        END AS recon_status
    FROM sides_at
),

status_history AS (
    SELECT
        trade_id,
        change_date,
        CASE WHEN presence = 'IN' THEN recon_status ELSE 'ABSENT' END AS status,
        presence = 'IN' AND recon_status NOT IN ('MATCHED', 'AWAITING_BO') AS is_break
    FROM status_at
),

last_calm AS (
    -- the last change date on which the trade was matched, awaiting or out of the recon
    SELECT trade_id, max(change_date) AS last_calm_date
    FROM status_history
    WHERE NOT is_break
    GROUP BY trade_id
),

break_runs AS (
    SELECT h.trade_id, min(h.change_date) AS first_seen_date
    FROM status_history h
    LEFT JOIN last_calm c USING (trade_id)
    WHERE h.is_break AND (c.last_calm_date IS NULL OR h.change_date > c.last_calm_date)
    GROUP BY h.trade_id
),

today AS (
    SELECT h.trade_id, h.status, h.is_break
    FROM status_history h, bounds b
    WHERE h.change_date = b.as_of_date AND h.status <> 'ABSENT'
),

front_today AS (
    -- the current front row of the date's recon trades, every column
    SELECT trade_id, unnest(front)
    FROM (
        SELECT
            t.trade_id,
            arg_max({'book': t.book, 'instrument_id': t.instrument_id, 'side': t.side,
                     'trade_date': t.trade_date, 'settle_date': t.settle_date, 'version': t.version,
                     'event_type': t.event_type, 'quantity': t.quantity, 'price': t.price,
                     'currency': t.currency},
                    (t.version, t.business_date)) AS front
        FROM core.trades t, bounds b
        WHERE t.business_date BETWEEN b.lookback_start AND b.as_of_date
          AND t.trade_id IN (SELECT trade_id FROM today)
        GROUP BY t.trade_id
    )
),

back_today AS (
    -- the current settlement of the date's recon trades, every column: each settlement's latest
    -- row, then the live one, else the latest cancelled one (as in back_at)
    SELECT trade_id, unnest(back)
    FROM (
        SELECT trade_id, arg_max(state, (state.status <> 'CANCELLED', state.delivered_on, state.settlement_id)) AS back
        FROM (
            SELECT
                s.trade_id,
                arg_max({'settlement_id': s.settlement_id, 'status': s.status,
                         'trade_version': s.trade_version, 'quantity': s.quantity,
                         'settlement_amount': s.settlement_amount, 'currency': s.currency,
                         'intended_settle_date': s.intended_settle_date, 'custodian': s.custodian,
                         'delivered_on': s.business_date},
                        s.business_date) AS state
            FROM core.settlements s, bounds b
            WHERE s.business_date BETWEEN b.lookback_start AND b.as_of_date
              AND s.trade_id IN (SELECT trade_id FROM today)
            GROUP BY s.trade_id, s.settlement_id
        )
        GROUP BY trade_id
    )
),

recon AS (
    SELECT
        t.trade_id,
        t.status,
        f.book,
        f.instrument_id,
        f.side,
        f.trade_date,
        f.settle_date,
        f.version AS front_version,
        f.event_type AS front_event_type,
        f.quantity AS front_quantity,
        f.price AS front_price,
        f.quantity * f.price AS front_amount,
        f.currency AS front_currency,
        s.settlement_id,
        s.status AS settlement_status,
        s.trade_version AS back_version,
        s.quantity AS back_quantity,
        s.settlement_amount AS back_amount,
        s.currency AS back_currency,
        s.intended_settle_date,
        s.custodian,
        f.version - s.trade_version AS version_diff,
        f.quantity - s.quantity AS quantity_diff,
        f.quantity * f.price - s.settlement_amount AS amount_diff,
        CASE WHEN t.is_break THEN r.first_seen_date END AS first_seen_date
    FROM today t
    LEFT JOIN front_today f ON f.trade_id = t.trade_id
    LEFT JOIN back_today s ON s.trade_id = t.trade_id
    LEFT JOIN break_runs r ON r.trade_id = t.trade_id
),

carried AS (
    -- the previous date's states of the other trades that are still in the window
    SELECT p.*
    FROM previous p, bounds b
    WHERE p.trade_id NOT IN (SELECT trade_id FROM touched)
      AND CASE
              WHEN p.front_version IS NOT NULL THEN
                  core.bd_number('FIRM', p.trade_date) >= b.as_of_bd - 19
              ELSE p.intended_settle_date >= b.window_start
          END
),

final AS (
    SELECT * FROM recon UNION ALL SELECT * FROM carried
)

-- not sorted: only the states that changed are written (midoffice.spans), in no particular order
SELECT * FROM final
