//! How the operator's own pods are found: the label and the metrics port that the
//! Deployment (the Helm chart, the simulation's install) sets and that the chaos runner
//! selects and scrapes. One place, so a renamed label cannot leave the runner scraping
//! nothing.

/// `app.kubernetes.io/name` of the operator's Deployment and pods.
pub const OPERATOR_APP_NAME: &str = "bloodraven";
/// The label selector of the operator's pods.
pub const OPERATOR_POD_SELECTOR: &str = "app.kubernetes.io/name=bloodraven";
/// Namespace the operator is installed into.
pub const OPERATOR_NAMESPACE: &str = "bloodraven-system";
/// Name of the container port serving `/metrics`, and its number (`--listen`'s default).
pub const METRICS_PORT_NAME: &str = "metrics";
pub const METRICS_PORT: u16 = 8080;

#[cfg(test)]
mod tests {
    #[test]
    fn the_selector_selects_the_app_name() {
        assert_eq!(
            super::OPERATOR_POD_SELECTOR,
            format!("app.kubernetes.io/name={}", super::OPERATOR_APP_NAME)
        );
    }
}
