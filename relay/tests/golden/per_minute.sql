-- Flows and bytes per minute.
SELECT date_bin(INTERVAL '1 minute', time) AS minute, count(*) AS flows, sum(fwd_bytes) AS fwd_bytes
FROM flows
GROUP BY 1
ORDER BY 1
