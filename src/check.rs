//! `check`: what a run would refuse, found before a run. The config is validated, the template
//! loaded and rendered (against the current discovery, or none with `--offline`), and
//! `check_command` runs on the result, as a run would before installing it. Every problem found is
//! reported, not only the first: a config that cannot be read stops the rest, but a template that
//! fails is still reported beside a state folder that is missing.

use serde::Serialize;

use crate::cli::Cli;
use crate::config::{Config, Reload};
use crate::decide::context::render_leaving_out_unsafe;
use crate::decide::membership::{BackendPlan, plan_backend};
use crate::error::{EXIT_OK, EXIT_USAGE, Error};
use crate::error_chain::error_chain;
use crate::haproxy::install;
use crate::model::Observed;
use crate::reconcile::reconcile;
use crate::store::with_store;

/// What `check` found.
#[derive(Debug, Serialize)]
struct Findings {
    mode: &'static str,
    config: String,
    offline: bool,
    /// Problems a run would stop on (exit 2 when there is one).
    problems: Vec<String>,
    /// What a run would say but go on with (instances left out, an empty backend).
    warnings: Vec<String>,
    /// `enabled` in the config: `false` makes runs refuse.
    enabled: bool,
}

/// Runs every check; exit 0 when there is no problem, 2 otherwise.
pub(crate) async fn check(cli: &Cli, offline: bool) -> Result<u8, Error> {
    let config = Config::from_cli(cli)?;
    let mut findings = Findings {
        mode: "check",
        config: config.source.to_string(),
        offline,
        enabled: config.enabled,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    match crate::haproxy::template::load(&config.haproxy.template) {
        Err(error) => findings.problems.push(error_chain(&Error::Template {
            config: config.source.to_string(),
            error,
        })),
        Ok(renderer) if offline => {
            if let Some(found) = render_without_instances(&config, &renderer).await {
                findings.problems.push(found);
            }
        }
        Ok(renderer) => match online(&config, &renderer).await {
            Ok((warnings, problems)) => {
                findings.warnings = warnings;
                findings.problems = problems;
            }
            Err(error) => {
                findings.problems.push(error_chain(&error));
                // Stopped before rendering (the cloud, the state): the template and
                // check_command are still checked, against no instance.
                if !matches!(error, Error::Plan(_) | Error::Install(_))
                    && let Some(found) = render_without_instances(&config, &renderer).await
                {
                    findings
                        .problems
                        .push(format!("against no instance: {found}"));
                }
            }
        },
    }
    findings.warnings.extend(unconfirmed_reloads(&config));
    print(cli, &findings);
    Ok(if findings.problems.is_empty() {
        EXIT_OK
    } else {
        EXIT_USAGE
    })
}

/// Renders every pool without instances and runs `check_command` on the result; the problem
/// found, if any.
async fn render_without_instances(
    config: &Config,
    renderer: &crate::decide::render::Renderer,
) -> Option<String> {
    let mut pools: Vec<BackendPlan> = config
        .pools
        .iter()
        .map(|pool| plan_backend(pool, &Observed::default(), None, &[]))
        .collect();
    let rendered = match render_leaving_out_unsafe(renderer, config, &mut pools) {
        Ok(rendered) => rendered,
        Err(error) => return Some(error_chain(&error)),
    };
    install::check_without_installing(&config.haproxy, &rendered)
        .await
        .err()
        .map(|error| error_chain(&error))
}

/// A reload command without a master socket: its exit status is all a run can go by, and
/// `systemctl reload haproxy` exits 0 when HAProxy fails to load the new config.
fn unconfirmed_reloads(config: &Config) -> Option<String> {
    let Reload::Command {
        master_socket: None,
        ..
    } = &config.haproxy.reload
    else {
        return None;
    };
    Some(
        "without `haproxy.master_socket` a run cannot tell whether HAProxy loaded the new config (`systemctl reload haproxy` exits 0 when it fails to), so a failed load is not rolled back: set it to the master CLI socket HAProxy is started with (Debian's haproxy.service: `/run/haproxy-master.sock`)"
            .to_owned(),
    )
}

/// A `--plan` run: discovery, stats, the decision, the render and `check_command`; its
/// warnings, and its problems: an external metric that gives no value (a run would hold the
/// pool every time until it does).
async fn online(
    config: &Config,
    renderer: &crate::decide::render::Renderer,
) -> Result<(Vec<String>, Vec<String>), Error> {
    let (clouds, store) = crate::reconcile::connect(config).await?;
    let now = crate::reconcile::unix_now() as i64;
    let report =
        with_store!(&store, store => reconcile(config, renderer, &clouds, store, true, now).await?);
    let mut warnings = report.plan.warnings.clone();
    warnings.extend(
        report
            .plan
            .pools
            .iter()
            .flat_map(|pool| pool.skipped.iter().map(move |skipped| (pool, skipped)))
            .map(|(pool, skipped)| {
                format!(
                    "pool `{}`: instance `{}` {}",
                    pool.name, skipped.instance_id, skipped.reason
                )
            }),
    );
    let problems = report
        .plan
        .pools
        .iter()
        .filter_map(|pool| {
            let why = pool.scale.as_ref()?.no_metric.as_ref()?;
            Some(format!(
                "pool `{}`: its metric gives no value, so a run would not scale it: {why}",
                pool.name
            ))
        })
        .collect();
    Ok((warnings, problems))
}

fn print(cli: &Cli, findings: &Findings) {
    if cli.format == crate::cli::Format::Json {
        crate::report::out_json(findings);
        return;
    }
    for warning in &findings.warnings {
        crate::report::say(format_args!("warning: {warning}"));
    }
    for problem in &findings.problems {
        crate::report::out(format_args!("problem: {problem}"));
    }
    if findings.problems.is_empty() {
        if !cli.quiet {
            let against = if findings.offline {
                "no instance (--offline)"
            } else {
                "the current discovery"
            };
            crate::report::out(format_args!(
                "ok: {} is valid, and its template renders against {against} into a haproxy.cfg that check_command accepts",
                findings.config
            ));
            if !findings.enabled {
                crate::report::out(format_args!(
                    "note: it says `enabled = false`: runs refuse (exit 2) until it says `enabled = true`"
                ));
            }
        }
    } else {
        crate::report::out(format_args!(
            "{} problem(s) in {}",
            findings.problems.len(),
            findings.config
        ));
    }
}
