-- Every column a flow fills, in time order.
SELECT time, node, uuid, verdict, drop_reason, kernel_drop, event_type, event_subtype, flow_type,
       ip_version, source_ip, destination_ip, source_port, destination_port, protocol, tcp_flags,
       source_identity, destination_identity, source_namespace, destination_pod, source_labels,
       destination_service, traffic_direction, observation_point, is_reply,
       fwd_packets, rev_packets, lifecycle_kind, lifecycle_duration_ns, lifecycle_retransmits, summary
FROM flows
ORDER BY time
