//! Pod host naming: the turmoil host a pod runs on. A leaf module, so that the kubelet
//! (which creates the hosts) and the cluster DNS (which resolves names to them) share
//! one rule without the network layer importing the control plane.

/// The turmoil host a pod runs on (reused when a pod of the same name returns, so a
/// StatefulSet pod keeps its address).
pub fn pod_host_name(namespace: &str, pod: &str) -> String {
    format!("{pod}.{namespace}.pod")
}
