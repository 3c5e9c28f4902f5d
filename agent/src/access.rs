//! Who may call what. Every call's client certificate is checked against
//! the agent's client CA, and the role it carries against the roles of the
//! RPC (`steward_proto::role::allowed`), before any service code runs. The
//! caller is then put into the request's extensions for the audit log.
//!
//! No certificate, or one the CA did not sign or that is not valid now:
//! UNAUTHENTICATED. A valid certificate whose role may not make the call:
//! PERMISSION_DENIED, naming the roles that may.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};
use steward_proto::Role;
use tonic::Status;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::audit::{AuditLog, Pending};
use crate::metrics::RpcMetrics;
use crate::refusal_log::RefusalLog;

/// Who made a call, as the audit log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The certificate's subject (for example `CN=ops, O=steward, OU=admin`),
    /// or what stood in for it.
    pub subject: String,
    /// The role it called with; `None` on an insecure agent.
    pub role: Option<Role>,
}

/// How calls are admitted.
#[derive(Clone, Debug)]
pub enum Policy {
    /// Development mode on loopback: everything, from anyone.
    Insecure,
    /// Mutual TLS with roles.
    Mutual {
        /// The full chain check against the client CA.
        verifier: Arc<dyn ClientCertVerifier>,
        /// gRPC health without a client certificate.
        health_open: bool,
    },
}

const HEALTH: &str = "/grpc.health.v1.Health/";

fn roles_text(roles: &[Role]) -> String {
    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" or ")
}

/// Decides one call to `path` made with `certs` (the chain the client
/// showed, leaf first) at `now`.
///
/// # Errors
/// The status to answer instead of running the call.
pub fn authorize(
    policy: &Policy,
    path: &str,
    certs: Option<&[CertificateDer<'static>]>,
    now: UnixTime,
) -> Result<Caller, Status> {
    let (verifier, health_open) = match policy {
        Policy::Insecure => {
            return Ok(Caller {
                subject: "anonymous (insecure agent)".into(),
                role: None,
            });
        }
        Policy::Mutual { verifier, health_open } => (verifier, *health_open),
    };
    if health_open && path.starts_with(HEALTH) {
        return Ok(Caller {
            subject: "anonymous (health check)".into(),
            role: None,
        });
    }
    let Some((leaf, intermediates)) = certs.and_then(<[_]>::split_first) else {
        return Err(Status::unauthenticated(
            "a client certificate signed by the agent's client CA is required (see `steward certs issue`)",
        ));
    };
    verifier
        .verify_client_cert(leaf, intermediates, now)
        .map_err(|e| Status::unauthenticated(format!("the client certificate is not accepted: {e}")))?;
    let (_, parsed) = X509Certificate::from_der(leaf)
        .map_err(|e| Status::unauthenticated(format!("the client certificate cannot be read: {e}")))?;
    let subject = parsed.subject().to_string();
    let named: Vec<&str> = parsed
        .subject()
        .iter_organizational_unit()
        .filter_map(|ou| ou.as_str().ok())
        .collect();
    let allowed = steward_proto::role::allowed(path);
    let role = match named.as_slice() {
        [one] => one.parse::<Role>().map_err(|_| {
            Status::permission_denied(format!(
                "the certificate {subject} carries no steward role (OU {one:?}); {path} needs {}",
                roles_text(allowed)
            ))
        })?,
        _ => {
            return Err(Status::permission_denied(format!(
                "the certificate {subject} must carry exactly one role as its OU; {path} needs {}",
                roles_text(allowed)
            )));
        }
    };
    if allowed.is_empty() {
        return Err(Status::permission_denied(format!("{path} may be called by no role")));
    }
    if !allowed.contains(&role) {
        return Err(Status::permission_denied(format!(
            "{path} needs the role {}; the certificate {subject} has the role {role}",
            roles_text(allowed)
        )));
    }
    Ok(Caller {
        subject,
        role: Some(role),
    })
}

/// The RPCs the audit log records (by their method name), refused ones
/// included: those that change the host, and the snapshot download, which
/// copies every secret stored in etcd.
#[must_use]
pub fn audited(path: &str) -> Option<&'static str> {
    const AUDITED: [&str; 15] = [
        "Activate",
        "Rollback",
        "Start",
        "Stop",
        "Restart",
        "RestoreMember",
        "FinishRestore",
        "ImportBinary",
        "UploadBinary",
        "TakeSnapshot",
        "TakeAndSendSnapshot",
        "UploadSnapshot",
        "ImportSnapshot",
        "PinSnapshot",
        "DownloadSnapshot",
    ];
    let method = path.strip_prefix("/steward.agent.v1.")?.split_once('/')?.1;
    AUDITED.into_iter().find(|m| *m == method)
}

/// The peer's address, when the transport knows it.
fn peer_ip<B>(request: &http::Request<B>) -> Option<std::net::IpAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.get_ref().remote_addr())
        .or_else(|| extensions.get::<TcpConnectInfo>().and_then(TcpConnectInfo::remote_addr))
        .map(|address| address.ip())
}

/// Who a caller refused PERMISSION_DENIED is, for the audit log: the
/// subject of its certificate (verified: the check that refused it was the
/// role's), cut to a bounded length.
fn claimed(certs: Option<&[CertificateDer<'static>]>) -> Caller {
    let subject = certs
        .and_then(<[_]>::first)
        .and_then(|leaf| {
            X509Certificate::from_der(leaf)
                .ok()
                .map(|(_, c)| c.subject().to_string())
        })
        .map_or_else(
            || "no client certificate".to_owned(),
            |s| format!("{} (refused)", crate::bounded::bounded(&s, crate::bounded::LOG_TEXT)),
        );
    Caller { subject, role: None }
}

/// The tower layer that runs [`authorize`] in front of every service.
#[derive(Clone, Debug)]
pub struct AccessLayer {
    policy: Arc<Policy>,
    audit: Arc<AuditLog>,
    metrics: Arc<RpcMetrics>,
    refusals: Arc<RefusalLog>,
}

impl AccessLayer {
    /// Admits calls by `policy`; refusals of audited RPCs go to `audit`,
    /// and every refusal is counted in `metrics`.
    #[must_use]
    pub fn new(policy: Policy, audit: Arc<AuditLog>, metrics: Arc<RpcMetrics>) -> Self {
        Self {
            policy: Arc::new(policy),
            audit,
            metrics,
            refusals: Arc::default(),
        }
    }
}

impl<S> tower::Layer<S> for AccessLayer {
    type Service = Access<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Access {
            inner,
            policy: Arc::clone(&self.policy),
            audit: Arc::clone(&self.audit),
            metrics: Arc::clone(&self.metrics),
            refusals: Arc::clone(&self.refusals),
        }
    }
}

/// See [`AccessLayer`].
#[derive(Clone, Debug)]
pub struct Access<S> {
    inner: S,
    policy: Arc<Policy>,
    audit: Arc<AuditLog>,
    metrics: Arc<RpcMetrics>,
    refusals: Arc<RefusalLog>,
}

type Answer<E> = Pin<Box<dyn Future<Output = Result<http::Response<tonic::body::Body>, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Access<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Answer<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let certs = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs);
        let path = request.uri().path().to_owned();
        match authorize(
            &self.policy,
            &path,
            certs.as_deref().map(Vec::as_slice),
            UnixTime::now(),
        ) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                // The clone that was polled ready serves this call.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(inner.call(request))
            }
            Err(status) => {
                self.metrics.refused(status.code());
                let shown = crate::bounded::bounded(&path, crate::bounded::LOG_TEXT);
                if status.code() == tonic::Code::Unauthenticated {
                    // Nobody is identified: one line per peer and minute,
                    // no audit line (see crate::refusal_log).
                    let peer = peer_ip(&request);
                    if let Some(held_back) = peer.and_then(|ip| self.refusals.admit(ip, std::time::Instant::now())) {
                        tracing::warn!(
                            peer = %peer.map_or_else(String::new, |ip| ip.to_string()),
                            path = %shown,
                            reason = %status.message(),
                            "call refused{}",
                            crate::refusal_log::held_back_text(held_back)
                        );
                    }
                } else {
                    tracing::warn!(path = %shown, code = ?status.code(), reason = %status.message(), "call refused");
                    if let Some(rpc) = audited(&path) {
                        let caller = claimed(certs.as_deref().map(Vec::as_slice));
                        let status = Err::<(), _>(status.clone());
                        let _ = Pending::start(&self.audit, Some(&caller), rpc, 0).finish(status);
                    }
                }
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };

    struct Ca {
        issuer: Issuer<'static, KeyPair>,
        der: CertificateDer<'static>,
    }

    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            der: cert.der().clone(),
        }
    }

    fn client(ca: &Ca, name: &str, ou: Option<&str>, expired: bool) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        if let Some(ou) = ou {
            params.distinguished_name.push(DnType::OrganizationalUnitName, ou);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        if expired {
            params.not_before = now - time::Duration::days(10);
            params.not_after = now - time::Duration::days(1);
        } else {
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(1);
        }
        params.signed_by(&key, &ca.issuer).unwrap().der().clone()
    }

    fn policy(ca: &Ca, health_open: bool) -> Policy {
        Policy::Mutual {
            verifier: crate::tls::client_verifier(vec![ca.der.clone()]).unwrap(),
            health_open,
        }
    }

    const ACTIVATE: &str = "/steward.agent.v1.Agent/Activate";
    const STATUS: &str = "/steward.agent.v1.Agent/GetStatus";

    fn call(policy: &Policy, path: &str, certs: &[CertificateDer<'static>]) -> Result<Caller, Status> {
        authorize(policy, path, Some(certs), UnixTime::now())
    }

    #[test]
    fn no_certificate_is_unauthenticated() {
        let ca = ca("steward CA");
        let status = authorize(&policy(&ca, false), STATUS, None, UnixTime::now()).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(status.message().contains("client certificate"), "{}", status.message());
    }

    #[test]
    fn another_ca_or_an_expired_certificate_is_unauthenticated() {
        let ca1 = ca("steward CA");
        let other = ca("someone else's CA");
        let status = call(
            &policy(&ca1, false),
            STATUS,
            &[client(&other, "x", Some("admin"), false)],
        )
        .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(status.message().contains("not accepted"), "{}", status.message());
        let status = call(&policy(&ca1, false), STATUS, &[client(&ca1, "x", Some("admin"), true)]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(
            status.message().to_lowercase().contains("expired"),
            "{}",
            status.message()
        );
    }

    /// A CA whose pathLenConstraint is 0, as `steward certs init` makes.
    fn leaves_only_ca(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            issuer: Issuer::new(params, key),
            der: cert.der().clone(),
        }
    }

    fn leaf(issuer: &Ca, cn: Option<&str>, usages: Vec<ExtendedKeyUsagePurpose>) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.distinguished_name.push(DnType::OrganizationalUnitName, "admin");
        params.extended_key_usages = usages;
        params.signed_by(&key, &issuer.issuer).unwrap().der().clone()
    }

    #[test]
    fn a_caller_must_be_named_and_for_client_authentication() {
        let ca = leaves_only_ca("steward CA");
        let policy = policy(&ca, false);
        let client_auth = || vec![ExtendedKeyUsagePurpose::ClientAuth];
        assert!(call(&policy, STATUS, &[leaf(&ca, Some("ops"), client_auth())]).is_ok());
        for (cert, says) in [
            (leaf(&ca, None, client_auth()), "names no holder"),
            (leaf(&ca, Some("  "), client_auth()), "names no holder"),
            (
                leaf(&ca, Some("ops"), vec![ExtendedKeyUsagePurpose::ServerAuth]),
                "client authentication",
            ),
            (leaf(&ca, Some("ops"), Vec::new()), "clientAuth"),
        ] {
            let status = call(&policy, STATUS, &[cert]).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{}", status.message());
            assert!(status.message().contains(says), "{}", status.message());
        }
    }

    #[test]
    fn a_ca_with_path_length_0_signs_callers_only() {
        let ca = leaves_only_ca("steward CA");
        // An intermediate CA the steward CA signed, against its constraint.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "rogue intermediate");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let intermediate_der = params.signed_by(&key, &ca.issuer).unwrap().der().clone();
        let intermediate = Ca {
            issuer: Issuer::new(params, key),
            der: intermediate_der.clone(),
        };
        let under = leaf(
            &intermediate,
            Some("mallory"),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        let status = call(&policy(&ca, false), ACTIVATE, &[under, intermediate_der]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{}", status.message());
        assert!(status.message().contains("pathLenConstraint"), "{}", status.message());

        // The CA itself sent along in the chain is no intermediate.
        let direct = leaf(&ca, Some("ops"), vec![ExtendedKeyUsagePurpose::ClientAuth]);
        assert!(call(&policy(&ca, false), ACTIVATE, &[direct, ca.der.clone()]).is_ok());
    }

    #[test]
    fn a_role_that_may_not_is_denied_naming_the_role_needed() {
        let ca = ca("steward CA");
        let reader = client(&ca, "dashboards", Some("reader"), false);
        let status = call(&policy(&ca, false), ACTIVATE, std::slice::from_ref(&reader)).unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(
            status.message().contains("needs the role admin"),
            "{}",
            status.message()
        );
        assert!(status.message().contains("has the role reader"), "{}", status.message());
        let caller = call(&policy(&ca, false), STATUS, &[reader]).unwrap();
        assert_eq!(caller.role, Some(Role::Reader));
        assert!(caller.subject.contains("CN=dashboards"), "{}", caller.subject);
    }

    #[test]
    fn a_certificate_without_a_role_is_denied() {
        let ca = ca("steward CA");
        let status = call(&policy(&ca, false), STATUS, &[client(&ca, "x", None, false)]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        let status = call(&policy(&ca, false), STATUS, &[client(&ca, "x", Some("root"), false)]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(status.message().contains("no steward role"), "{}", status.message());
    }

    #[test]
    fn health_is_open_only_when_configured() {
        let ca = ca("steward CA");
        let path = "/grpc.health.v1.Health/Check";
        assert!(authorize(&policy(&ca, true), path, None, UnixTime::now()).is_ok());
        assert_eq!(
            authorize(&policy(&ca, false), path, None, UnixTime::now())
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
        // Open health opens nothing else.
        assert!(authorize(&policy(&ca, true), STATUS, None, UnixTime::now()).is_err());
    }

    #[test]
    fn the_audited_rpcs_are_the_changes_and_the_download() {
        assert_eq!(audited(ACTIVATE), Some("Activate"));
        assert_eq!(
            audited("/steward.agent.v1.Snapshots/DownloadSnapshot"),
            Some("DownloadSnapshot")
        );
        assert_eq!(audited("/steward.agent.v1.Binaries/UploadBinary"), Some("UploadBinary"));
        assert_eq!(audited("/steward.agent.v1.Agent/RestoreMember"), Some("RestoreMember"));
        assert_eq!(
            audited("/steward.agent.v1.Snapshots/UploadSnapshot"),
            Some("UploadSnapshot")
        );
        assert_eq!(
            audited("/steward.agent.v1.Snapshots/ImportSnapshot"),
            Some("ImportSnapshot")
        );
        assert_eq!(audited(STATUS), None);
        assert_eq!(audited("/steward.agent.v1.Snapshots/ListSnapshots"), None);
        assert_eq!(audited("/grpc.health.v1.Health/Check"), None);
    }

    #[test]
    fn an_unknown_rpc_is_denied_to_everyone() {
        let ca = ca("steward CA");
        let admin = client(&ca, "ops", Some("admin"), false);
        let status = call(&policy(&ca, false), "/steward.agent.v1.Agent/Nope", &[admin]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
    }
}
