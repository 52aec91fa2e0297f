-- Bytes per edge of the service graph (workload to workload).
SELECT source_workload, destination_workload,
       sum(fwd_bytes) AS fwd_bytes, sum(rev_bytes) AS rev_bytes, count(*) AS flows
FROM flows
WHERE fwd_bytes IS NOT NULL
GROUP BY 1, 2
ORDER BY 1, 2
