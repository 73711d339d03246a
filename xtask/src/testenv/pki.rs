//! The test cluster's certificates: one CA; the apiserver's serving certificate (loopback, the
//! node's address and the `kubernetes` Service); client certificates for the admin
//! (`system:masters`), the controller-manager, the scheduler, kube-proxy and the node
//! (`system:node:<name>` in `system:nodes`, as the Node authorizer expects); kubelet's serving
//! certificate; the ServiceAccount token signing key pair; and the key pair test JWTs are signed
//! with. ECDSA P-256, made fresh for every run.

use std::path::Path;

use anyhow::Result;

use super::node::{
    IN_CLUSTER_SERVICES, KUBERNETES_SERVICE_IP, NODE_IP, NODE_NAME, SERVICES_NAMESPACE,
};
use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// Paths of the PEM files written into the run's directory.
pub struct Pki {
    pub ca_cert: String,
    pub serving_cert: String,
    pub serving_key: String,
    pub admin_cert: String,
    pub admin_key: String,
    pub controller_manager_cert: String,
    pub controller_manager_key: String,
    pub scheduler_cert: String,
    pub scheduler_key: String,
    pub proxy_cert: String,
    pub proxy_key: String,
    /// The API server's identity towards kubelet (logs, exec, port-forward).
    pub kubelet_client_cert: String,
    pub kubelet_client_key: String,
    /// The serving certificate of OpenBao's and moto's in-cluster TLS endpoints (their Service
    /// names and addresses, and the node's address).
    pub services_cert: String,
    pub services_key: String,
    /// CoreDNS's identity (`seal-testenv:coredns`, bound to what it watches).
    pub coredns_cert: String,
    pub coredns_key: String,
    /// The node's client identity, `system:node:<name>`.
    pub node_cert: String,
    pub node_key: String,
    /// kubelet's serving certificate (the node's address and name).
    pub kubelet_serving_cert: String,
    pub kubelet_serving_key: String,
    pub sa_public: String,
    pub sa_private: String,
    /// Key pair the tests sign JWTs with; OpenBao's JWT auth trusts its public half.
    pub jwt_public: String,
    pub jwt_private: String,
}

impl Pki {
    /// Generates everything into `dir`.
    pub fn generate(dir: &Path) -> Result<Self> {
        let write = |name: &str, text: &str| -> Result<String> {
            let path = dir.join(name);
            std::fs::write(&path, text)?;
            Ok(path.display().to_string())
        };
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name = name("seal-testenv-ca", None);
        ca_params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |common_name: &str,
                    organization: Option<&str>,
                    sans: Vec<String>|
         -> Result<(String, String)> {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(sans)?;
            params.distinguished_name = name(common_name, organization);
            let cert = params.signed_by(&key, &issuer)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let (serving_cert, serving_key) = leaf(
            "kube-apiserver",
            None,
            vec![
                "127.0.0.1".into(),
                "localhost".into(),
                "kubernetes".into(),
                "kubernetes.default".into(),
                "kubernetes.default.svc".into(),
                "kubernetes.default.svc.cluster.local".into(),
                NODE_IP.to_string(),
                KUBERNETES_SERVICE_IP.to_string(),
            ],
        )?;
        let (admin_cert, admin_key) = leaf("admin", Some("system:masters"), Vec::new())?;
        let (manager_cert, manager_key) = leaf("system:kube-controller-manager", None, Vec::new())?;
        let (scheduler_cert, scheduler_key) = leaf("system:kube-scheduler", None, Vec::new())?;
        let (proxy_cert, proxy_key) = leaf("system:kube-proxy", None, Vec::new())?;
        let (coredns_cert, coredns_key) = leaf("seal-testenv:coredns", None, Vec::new())?;
        let (services_cert, services_key) =
            leaf("seal-testenv services", None, in_cluster_names())?;
        let (kubelet_client_cert, kubelet_client_key) = leaf(
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
            Vec::new(),
        )?;
        let (node_cert, node_key) = leaf(
            &format!("system:node:{NODE_NAME}"),
            Some("system:nodes"),
            Vec::new(),
        )?;
        let (kubelet_serving_cert, kubelet_serving_key) = leaf(
            NODE_NAME,
            None,
            vec![NODE_IP.to_string(), NODE_NAME.to_owned()],
        )?;
        let sa_key = KeyPair::generate()?;
        let jwt_key = KeyPair::generate()?;
        Ok(Self {
            ca_cert: write("ca.crt", &ca_cert.pem())?,
            serving_cert: write("apiserver.crt", &serving_cert)?,
            serving_key: write("apiserver.key", &serving_key)?,
            admin_cert: write("admin.crt", &admin_cert)?,
            admin_key: write("admin.key", &admin_key)?,
            controller_manager_cert: write("controller-manager.crt", &manager_cert)?,
            controller_manager_key: write("controller-manager.key", &manager_key)?,
            scheduler_cert: write("scheduler.crt", &scheduler_cert)?,
            scheduler_key: write("scheduler.key", &scheduler_key)?,
            proxy_cert: write("kube-proxy.crt", &proxy_cert)?,
            proxy_key: write("kube-proxy.key", &proxy_key)?,
            kubelet_client_cert: write("kubelet-client.crt", &kubelet_client_cert)?,
            kubelet_client_key: write("kubelet-client.key", &kubelet_client_key)?,
            services_cert: write("services.crt", &services_cert)?,
            services_key: write("services.key", &services_key)?,
            coredns_cert: write("coredns.crt", &coredns_cert)?,
            coredns_key: write("coredns.key", &coredns_key)?,
            node_cert: write("node.crt", &node_cert)?,
            node_key: write("node.key", &node_key)?,
            kubelet_serving_cert: write("kubelet.crt", &kubelet_serving_cert)?,
            kubelet_serving_key: write("kubelet.key", &kubelet_serving_key)?,
            sa_public: write("sa.pub", &sa_key.public_key_pem())?,
            sa_private: write("sa.key", &sa_key.serialize_pem())?,
            jwt_public: write("jwt.pub", &jwt_key.public_key_pem())?,
            jwt_private: write("jwt.key", &jwt_key.serialize_pem())?,
        })
    }
}

/// Every name and address pods reach OpenBao and moto by.
fn in_cluster_names() -> Vec<String> {
    let mut names = vec![NODE_IP.to_string()];
    for service in IN_CLUSTER_SERVICES {
        let host = format!("{}.{SERVICES_NAMESPACE}.svc", service.name);
        names.push(service.ip.to_string());
        names.push(format!("{host}.cluster.local"));
        names.push(host);
    }
    names
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    if let Some(organization) = organization {
        dn.push(DnType::OrganizationName, organization);
    }
    dn
}
