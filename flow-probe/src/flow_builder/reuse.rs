//! Writing a flow into the memory of an older one: strings and lists are
//! overwritten in place, so a full store turns over without allocating (see
//! `FlowStore::push_with`). Each helper leaves its target equal to what a
//! fresh build would make.

use std::fmt::Write as _;
use std::net::IpAddr;

use observer_proto::flow::{Endpoint, Workload};

/// `dst = src`, in `dst`'s memory.
pub fn set_str(dst: &mut String, src: &str) {
    dst.clear();
    dst.push_str(src);
}

/// `dst = ip.to_string()`, in `dst`'s memory.
pub fn set_ip_text(dst: &mut String, ip: IpAddr) {
    dst.clear();
    let _ = write!(dst, "{ip}");
}

/// `dst = Some(src.clone())`, in the memory of what `dst` holds.
pub fn set_endpoint(dst: &mut Option<Endpoint>, src: &Endpoint) {
    let Some(d) = dst else {
        *dst = Some(src.clone());
        return;
    };
    // Every field, so a field added to the message cannot be forgotten here.
    let Endpoint {
        id,
        identity,
        cluster_name,
        namespace,
        labels,
        pod_name,
        workloads,
    } = src;
    d.id = *id;
    d.identity = *identity;
    set_str(&mut d.cluster_name, cluster_name);
    set_str(&mut d.namespace, namespace);
    // Vec<String>::clone_from reuses the strings it keeps.
    d.labels.clone_from(labels);
    set_str(&mut d.pod_name, pod_name);
    d.workloads.truncate(workloads.len());
    for (i, w) in workloads.iter().enumerate() {
        match d.workloads.get_mut(i) {
            Some(dw) => {
                let Workload { name, kind } = w;
                set_str(&mut dw.name, name);
                set_str(&mut dw.kind, kind);
            }
            None => d.workloads.push(w.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(name: &str, labels: &[&str], workloads: &[(&str, &str)]) -> Endpoint {
        Endpoint {
            id: 7,
            identity: 1234,
            cluster_name: "c".into(),
            namespace: "ns".into(),
            labels: labels.iter().map(ToString::to_string).collect(),
            pod_name: name.into(),
            workloads: workloads
                .iter()
                .map(|(n, k)| Workload {
                    name: n.to_string(),
                    kind: k.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn an_endpoint_written_over_another_equals_the_source() {
        let src = ep("web-1", &["k8s:app=web"], &[("web", "Deployment")]);
        for old in [
            None,
            Some(Endpoint::default()),
            Some(ep("a-much-longer-pod-name", &["x", "y", "z"], &[])),
            Some(ep("p", &[], &[("a", "b"), ("c", "d")])),
        ] {
            let mut dst = old;
            set_endpoint(&mut dst, &src);
            assert_eq!(dst.as_ref(), Some(&src));
        }
        let mut s = String::from("198.18.255.255");
        set_ip_text(&mut s, "fd42::1".parse().unwrap());
        assert_eq!(s, "fd42::1");
    }
}
