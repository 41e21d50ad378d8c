//! `statusgate demo`: the four vendor emulators and the gateway, on loopback, with the shipped
//! profiles (the embedded `deploy/demo.yaml`), plus curl lines that show each vendor's quirk
//! straight from the emulator and then through the gateway. Part of the binary, not of the
//! library: only the binary depends on the emulators crate.

use std::path::Path;
use std::sync::Arc;

use statusgate::reload::SnapshotHandle;
use statusgate_emulators::{crest, huawei, oracle, service, veeam};

pub const DEMO_CONFIG: &str = "embedded:deploy/demo.yaml";

/// Emulator addresses; `deploy/demo.yaml` routes to them.
pub const VEEAM: &str = "127.0.0.1:18001";
pub const HUAWEI: &str = "127.0.0.1:18002";
pub const ORACLE: &str = "127.0.0.1:18003";
pub const CREST: &str = "127.0.0.1:18004";

fn banner() -> String {
    let hw = format!("/v1/{}/vpc-endpoints", huawei::DEMO_PROJECT_ID);
    let crest_create = format!(
        "-X POST -H 'X-OpenIDM-Username: {}' -H 'X-OpenIDM-Password: {}' -H 'Content-Type: application/json' \
         -d '{{\"userName\":\"newuser\",\"mail\":\"new@example.com\",\"password\":\"short\"}}'",
        crest::ADMIN_USERNAME,
        crest::ADMIN_PASSWORD
    );
    format!(
        r#"
statusgate demo: gateway http://127.0.0.1:8080 (admin http://127.0.0.1:9090/metrics)
  /veeam/     -> Veeam Backup Enterprise Manager emulator  {VEEAM}
  /huawei/    -> Huawei Cloud VPC Endpoint emulator        {HUAWEI}
  /oracle/    -> Oracle REST Data Services emulator         {ORACLE}
  /forgerock/ -> ForgeRock Common REST emulator             {CREST}

Each pair below asks the vendor directly, then through the gateway:

# Huawei answers a POST without a body with 504 (EndPoint.0011); the gateway says 400
curl -si -X POST -H 'X-Auth-Token: {token}' http://{HUAWEI}{hw}
curl -si -X POST -H 'X-Auth-Token: {token}' http://127.0.0.1:8080/huawei{hw}

# Veeam leaks a .NET stack trace with "500 InternalServerError"; the gateway sends a problem body
SID=$(curl -si -X POST -u '{vu}:{vp}' 'http://{VEEAM}/api/sessionMngr/?v=latest' | tr -d '\r' | awk -F': ' 'tolower($1)=="x-restsvcsessionid"{{print $2}}')
curl -si -H "X-RestSvcSessionId: $SID" http://{VEEAM}/api/backups/{orphan}
curl -si -H "X-RestSvcSessionId: $SID" http://127.0.0.1:8080/veeam/api/backups/{orphan}

# Oracle's problem JSON has no status and a tag: type; the gateway's is RFC 9457
curl -si http://{ORACLE}/ords/hr/employees/999999
curl -si http://127.0.0.1:8080/oracle/ords/hr/employees/999999

# ForgeRock reports a password policy failure as 403; the gateway says 422 and keeps the requirements
curl -si {crest_create} 'http://{CREST}/openidm/managed/user?_action=create'
curl -si {crest_create} 'http://127.0.0.1:8080/forgerock/openidm/managed/user?_action=create'

Try your own upstream response: statusgate explain -c <config> --route huawei --status 400 --body '...'
Ctrl-C stops the demo.
"#,
        token = huawei::DEMO_TOKEN,
        vu = veeam::ADMIN_USER,
        vp = veeam::ADMIN_PASSWORD,
        orphan = veeam::ORPHANED_BACKUP_ID,
    )
}

/// Runs the demo until SIGTERM/SIGINT; returns the exit code.
pub fn run() -> i32 {
    let path = Path::new(DEMO_CONFIG);
    let Ok(snap) = statusgate::cli::load_reporting(path) else {
        return 1;
    };
    let _log_guard = statusgate::telemetry::access_log::init(&snap.boot.log_format, &snap.boot.log_filter);
    let handle = Arc::new(SnapshotHandle::new(path, snap));
    let mut built = match statusgate::server::build(handle, false) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("statusgate demo: cannot start: {e}");
            return 1;
        }
    };
    built
        .server
        .add_service(service("veeam-emulator", veeam::Veeam::new(), VEEAM));
    built
        .server
        .add_service(service("huawei-emulator", huawei::Huawei::new(), HUAWEI));
    built
        .server
        .add_service(service("oracle-emulator", oracle::Oracle::new(), ORACLE));
    built
        .server
        .add_service(service("crest-emulator", crest::Crest::new(), CREST));
    println!("{}", banner());
    built.server.run(pingora::server::RunArgs::default());
    0
}
