//! The external-dns `DNSEndpoint` that points `spec.dns.hostname` at the active site's
//! targets. external-dns publishes it; the operator only rewrites the targets.

use crate::api::{DNSEndpoint, DNSEndpointSpec, Endpoint, MysqlFailoverGroup};

use super::{BuildError, MYSQL_APP_NAME, Owner, names};

/// `None` without `spec.dns` or without an active site.
pub fn dns_endpoint(
    owner: &Owner,
    group: &MysqlFailoverGroup,
    active_site: Option<&str>,
) -> Result<Option<DNSEndpoint>, BuildError> {
    let (Some(dns), Some(site)) = (&group.spec.dns, active_site) else {
        return Ok(None);
    };
    // The CRD's CEL rule demands a target per site; this guards objects that bypassed
    // validation (or a status naming a site since removed from spec).
    let targets = dns
        .targets
        .get(site)
        .ok_or_else(|| BuildError::NoDnsTarget {
            group: owner.name.clone(),
            site: site.to_string(),
        })?;
    let mut endpoint = DNSEndpoint::new(
        &names::dns_endpoint(&owner.name),
        DNSEndpointSpec {
            endpoints: vec![Endpoint {
                dns_name: dns.hostname.clone(),
                targets: targets.clone(),
                record_type: Some(dns.record_type.as_str().to_string()),
                set_identifier: Some(owner.name.clone()),
                record_ttl: Some(dns.ttl),
                ..Endpoint::default()
            }],
        },
    );
    endpoint.metadata = owner.child_meta(
        names::dns_endpoint(&owner.name),
        owner.labels(MYSQL_APP_NAME),
    );
    Ok(Some(endpoint))
}
