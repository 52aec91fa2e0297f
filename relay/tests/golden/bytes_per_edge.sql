-- Bytes per edge of the service graph (workload to workload), each
-- connection once with its largest running totals, oriented from the
-- workload that opened it (see top_talkers.sql).
WITH connections AS (
    SELECT CASE WHEN is_reply THEN destination_workload ELSE source_workload END AS client,
           CASE WHEN is_reply THEN source_workload ELSE destination_workload END AS server,
           CASE WHEN is_reply THEN destination_ip ELSE source_ip END AS client_ip,
           CASE WHEN is_reply THEN destination_port ELSE source_port END AS client_port,
           CASE WHEN is_reply THEN source_ip ELSE destination_ip END AS server_ip,
           CASE WHEN is_reply THEN source_port ELSE destination_port END AS server_port,
           protocol,
           max(fwd_bytes) AS fwd_bytes, max(rev_bytes) AS rev_bytes
    FROM flows
    WHERE fwd_bytes IS NOT NULL
    GROUP BY 1, 2, 3, 4, 5, 6, 7
)
SELECT client AS source_workload, server AS destination_workload,
       sum(fwd_bytes) AS fwd_bytes, sum(rev_bytes) AS rev_bytes, count(*) AS connections
FROM connections
GROUP BY 1, 2
ORDER BY 1, 2
