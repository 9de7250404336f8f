//! A real OpenLDAP (`slapd` from Debian) for the tests: its own config, database and TLS
//! certificates in a temporary directory, StartTLS required, on a loopback port.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;
use tokio::process::Child;

pub const BASE: &str = "dc=example,dc=com";
pub const SERVICE_DN: &str = "cn=portcullis,ou=services,dc=example,dc=com";
pub const SERVICE_PASSWORD: &str = "service-secret";

pub struct Slapd {
    pub url: String,
    pub ca_file: String,
    _child: Child,
    _dir: TempDir,
}

const LDIF: &str = "\
dn: dc=example,dc=com
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,dc=example,dc=com
objectClass: organizationalUnit
ou: people

dn: ou=services,dc=example,dc=com
objectClass: organizationalUnit
ou: services

dn: ou=groups,dc=example,dc=com
objectClass: organizationalUnit
ou: groups

dn: cn=portcullis,ou=services,dc=example,dc=com
objectClass: person
cn: portcullis
sn: service
userPassword: service-secret

dn: uid=alice,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
sn: Liddell
mail: alice@example.com
userPassword: alice-ldap-pw
memberOf: cn=staff,ou=groups,dc=example,dc=com

dn: uid=bob,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
uid: bob
cn: Bob Builder
sn: Builder
mail: bob@example.com
userPassword: bob-ldap-pw
memberOf: cn=staff,ou=groups,dc=example,dc=com
memberOf: cn=ldap-admins,ou=groups,dc=example,dc=com

dn: cn=staff,ou=groups,dc=example,dc=com
objectClass: groupOfNames
cn: staff
member: uid=alice,ou=people,dc=example,dc=com
member: uid=bob,ou=people,dc=example,dc=com

dn: cn=ldap-admins,ou=groups,dc=example,dc=com
objectClass: groupOfNames
cn: ldap-admins
member: uid=bob,ou=people,dc=example,dc=com
";

fn run(dir: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (scripts/install-test-deps installs it)"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1, made with the openssl command.
pub fn certificates(dir: &Path) {
    run(
        dir,
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=Portcullis test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    run(
        dir,
        "openssl",
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(
        dir,
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    );
}

pub async fn start() -> Slapd {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certificates(d);
    std::fs::create_dir(d.join("db")).unwrap();
    let conf = format!(
        "include /etc/ldap/schema/core.schema\n\
         include /etc/ldap/schema/cosine.schema\n\
         include /etc/ldap/schema/inetorgperson.schema\n\
         pidfile {dir}/slapd.pid\n\
         modulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload memberof\n\
         TLSCACertificateFile {dir}/ca.pem\nTLSCertificateFile {dir}/server.pem\n\
         TLSCertificateKeyFile {dir}/server.key\n\
         # Nothing but StartTLS: a plain-text bind would be refused.\n\
         security tls=1\n\
         database mdb\nsuffix \"{BASE}\"\nrootdn \"cn=admin,{BASE}\"\nrootpw admin-secret\n\
         directory {dir}/db\n\
         # memberOf, as Active Directory and most OpenLDAP setups publish it.\n\
         overlay memberof\n\
         access to attrs=userPassword by anonymous auth by * none\n\
         access to * by * read\n",
        dir = d.display()
    );
    std::fs::write(d.join("slapd.conf"), conf).unwrap();
    std::fs::write(d.join("data.ldif"), LDIF).unwrap();
    run(
        d,
        "/usr/sbin/slapadd",
        &["-f", "slapd.conf", "-l", "data.ldif"],
    );
    let port = super::idp::free_port();
    let url = format!("ldap://127.0.0.1:{port}");
    let child = tokio::process::Command::new("/usr/sbin/slapd")
        .args(["-f", "slapd.conf", "-h", &format!("{url}/"), "-d", "0"])
        .current_dir(d)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(d.join("slapd.log")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("slapd from Debian (scripts/install-test-deps installs it)");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Slapd {
                url,
                ca_file: d.join("ca.pem").display().to_string(),
                _child: child,
                _dir: dir,
            };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "slapd did not start: {}",
        std::fs::read_to_string(d.join("slapd.log")).unwrap_or_default()
    );
}
