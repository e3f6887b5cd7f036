-- Concentration of the firm's risk (DOMAIN §4.1): for each dimension (book, issuer, country,
-- asset_class, sector over the BOOK holdings; client over the CLIENT holdings, see the yml) and
-- member, gross and net market value, the member's share of the dimension's gross, and per
-- dimension the Herfindahl-Hirschman index hhi = Σ share² and effective_n = 1 / hhi.
-- Sums are exact decimals (to a millionth of a dollar) so that a rerun gives the same bits.
WITH exposure AS (
    SELECT holder_type, holder_id, instrument_id, market_value_usd,
           asset_class, sector, issuer_id, issuer_country
    FROM main.risk_exposure
    WHERE as_of_date = getvariable('as_of_date')
),

book_members AS (
    -- one row per BOOK holding and dimension; a missing attribute is the member UNKNOWN
    SELECT dimension, coalesce(member, 'UNKNOWN') AS member, market_value_usd
    FROM exposure
    CROSS JOIN LATERAL (VALUES
        ('book', holder_id),
        ('issuer', issuer_id),
        ('country', issuer_country),
        ('asset_class', asset_class),
        ('sector', sector)
    ) AS m(dimension, member)
    WHERE holder_type = 'BOOK'
),

book_member_totals AS (
    SELECT
        dimension,
        member,
        count(*) AS n_positions,
        sum(CAST(abs(market_value_usd) AS DECIMAL(38, 6))) AS gross_usd,
        sum(CAST(market_value_usd AS DECIMAL(38, 6))) AS net_usd
    FROM book_members
    GROUP BY dimension, member
),

client_totals AS (
    -- the client dimension: how the assets the firm's clients hold are spread over clients
    SELECT
        holder_id AS client_key,  -- risk_exposure publishes clients under their pseudonym
        count(*) AS n_positions,
        sum(CAST(abs(market_value_usd) AS DECIMAL(38, 6))) AS gross_usd,
        sum(CAST(market_value_usd AS DECIMAL(38, 6))) AS net_usd
    FROM exposure
    WHERE holder_type = 'CLIENT'
    GROUP BY holder_id
),

member_totals AS MATERIALIZED (
    -- materialised: read three times below
    SELECT * FROM book_member_totals
    UNION ALL
    SELECT 'client', client_key, n_positions, gross_usd, net_usd FROM client_totals
),

dimension_totals AS (
    SELECT dimension, sum(gross_usd) AS dimension_gross_usd, count(*) AS n_members
    FROM member_totals
    GROUP BY dimension
),

shares AS (
    SELECT
        m.dimension,
        m.member,
        m.n_positions,
        m.gross_usd,
        m.net_usd,
        CAST(m.gross_usd AS DOUBLE) / nullif(CAST(d.dimension_gross_usd AS DOUBLE), 0) AS share,
        d.n_members
    FROM member_totals m
    JOIN dimension_totals d USING (dimension)
),

indices AS (
    -- Σ share² summed in a fixed order (list in member order), for reproducible bits
    SELECT dimension, list_sum(list(share * share ORDER BY member)) AS hhi
    FROM shares
    GROUP BY dimension
),

final AS (
    SELECT
        getvariable('as_of_date') AS as_of_date,
        s.dimension,
        s.member,
        s.n_positions,
        CAST(s.gross_usd AS DOUBLE) AS gross_usd,
        CAST(s.net_usd AS DOUBLE) AS net_usd,
        s.share,
        row_number() OVER (PARTITION BY s.dimension ORDER BY s.gross_usd DESC, s.member) AS share_rank,
        s.n_members,
        i.hhi,
        1 / nullif(i.hhi, 0) AS effective_n
    FROM shares s
    JOIN indices i USING (dimension)
)

SELECT * FROM final ORDER BY dimension, member
