-- Drops by reason: the datapath's or else the kernel's.
SELECT coalesce(drop_reason, kernel_drop) AS reason, count(*) AS drops
FROM flows
WHERE verdict = 'DROPPED'
GROUP BY 1
ORDER BY drops DESC, reason
