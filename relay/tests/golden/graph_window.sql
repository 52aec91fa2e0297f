-- The graph of the first minute, with Grafana's $__timeFilter(time) expanded;
-- the later flows (web -> dns, the kernel drop, hour 11) are not on it.
SELECT id, mainstat, secondarystat, detail__connections, detail__dropped,
       detail__drop_reasons, detail__hops
FROM graph_edges
WHERE time >= '2024-05-01T10:00:00Z' AND time <= '2024-05-01T10:00:59Z'
ORDER BY id
