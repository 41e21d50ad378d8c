//! Build metadata for `statusgate --version`: the git revision and the build date, as the
//! compile-time variables `STATUSGATE_REVISION` and `STATUSGATE_BUILD_DATE`.
//!
//! - Revision: `$STATUSGATE_REVISION` when set (a build from a tarball or a container context
//!   without `.git`: the Dockerfile passes its `REVISION` build argument), else `git rev-parse
//!   --short HEAD` in the package directory, else `unknown`.
//! - Build date (UTC, `YYYY-MM-DD`): `$SOURCE_DATE_EPOCH` when set and not empty (reproducible
//!   builds, see <https://reproducible-builds.org/specs/source-date-epoch/>), else now.
//!
//! The script reruns when either variable or the checked-out commit changes (HEAD, the branch
//! it points at, packed refs), not on every build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-env-changed=STATUSGATE_REVISION");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));

    let revision = match std::env::var("STATUSGATE_REVISION") {
        Ok(r) if !r.trim().is_empty() => r.trim().to_owned(),
        _ => git_revision(&dir).unwrap_or_else(|| "unknown".to_owned()),
    };
    let epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if !s.trim().is_empty() => s
            .trim()
            .parse::<i64>()
            .unwrap_or_else(|_| panic!("SOURCE_DATE_EPOCH is not a number of seconds: `{s}`")),
        _ => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
    };
    println!("cargo:rustc-env=STATUSGATE_REVISION={revision}");
    println!("cargo:rustc-env=STATUSGATE_BUILD_DATE={}", civil_date(epoch));
}

/// The short revision of HEAD, and the git files whose change means another HEAD.
fn git_revision(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").current_dir(dir).args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    };
    let revision = git(&["rev-parse", "--short", "HEAD"])?;
    // `--git-path` resolves worktrees and the common directory; the paths may be relative.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(p) = git(&["rev-parse", "--git-path", &name]) {
            let p = dir.join(p);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    Some(revision)
}

/// `YYYY-MM-DD` (UTC) of a Unix time: days to the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_date(epoch: i64) -> String {
    let z = epoch.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
