-- Verdicts per policy that decided them.
WITH p AS (
    SELECT coalesce(ingress_allowed_by, ingress_denied_by, egress_allowed_by, egress_denied_by) AS policy,
           verdict
    FROM flows
)
SELECT policy, verdict, count(*) AS flows
FROM p
WHERE policy IS NOT NULL
GROUP BY policy, verdict
ORDER BY policy, verdict
