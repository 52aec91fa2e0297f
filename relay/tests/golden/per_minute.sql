-- Flows and drops per minute.
SELECT date_bin(INTERVAL '1 minute', time) AS minute, count(*) AS flows,
       count(*) FILTER (WHERE verdict = 'DROPPED') AS dropped
FROM flows
GROUP BY 1
ORDER BY 1
