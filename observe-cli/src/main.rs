//! The `observe` command. Flags are parsed into plain structs here; each
//! subcommand's module builds its real configuration from them.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use observe_cli::connect::ConnectArgs;
use observe_cli::flows::output::{ColorChoice, Format};
use observe_cli::flows::{self, request::DEFAULT_SERVERS, request::QueryArgs};
use observe_cli::graph_command::diff_args::DiffArgs;
use observe_cli::graph_command::{self, GraphFormat};
use observe_cli::tui::signals::Stopped;
use observe_cli::{lab_commands, policy_commands};
use observe_lab::DEFAULT_STATE_DIR;

/// The longest `observe lab traffic --duration`: a year (a deadline further
/// away overflows the clock's instant).
const MAX_TRAFFIC_SECS: u64 = 365 * 24 * 3600;

#[derive(Debug, Parser)]
#[command(
    name = "observe",
    version,
    about = "Network flow observability: flows, status and a lab to try them on"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show flows from a flow-probe or relay, like `hubble observe`.
    Flows {
        /// The server (default localhost:4245, the relay, then localhost:4244,
        /// a probe) and TLS.
        #[command(flatten)]
        connect: ConnectArgs,
        /// Output format. Without one, --follow on a terminal opens the
        /// terminal UI; otherwise flows print as compact lines.
        #[arg(long, short = 'o', ignore_case = true, value_enum)]
        output: Option<Format>,
        /// Print the node name in each line.
        #[arg(long)]
        print_node_name: bool,
        /// After a policy verdict's ALLOWED, DENIED or AUDITED, the
        /// policies that decided it (`DENIED BY name (kind)`), as Hubble's
        /// flag of the same name.
        #[arg(long)]
        print_policy_names: bool,
        /// Also tell (on stderr) nodes connecting and leaving, not only
        /// nodes that are unavailable.
        #[arg(long, short = 'D')]
        debug: bool,
        /// Print the filters the flags make (allowlist and denylist, as
        /// `hubble observe`) and exit without asking a server.
        #[arg(long)]
        print_raw_filters: bool,
        /// Layout of times in compact, dict and table output (UTC).
        #[arg(long, value_enum, default_value_t, ignore_case = true)]
        time_format: observe_cli::flows::output::TimeFormat,
        /// Name the ends of a flow by pod, service or DNS name (false:
        /// by address), as Hubble's flag of the same name (alone: true).
        #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
              require_equals = true, action = clap::ArgAction::Set)]
        ip_translation: bool,
        /// Addresses and numbers only, no names: as --ip-translation=false
        /// (Hubble's flag of the same name).
        #[arg(long)]
        numeric: bool,
        /// Nothing on stderr but a fatal error: no node status, no skipped
        /// line of --input-file (Hubble's -s).
        #[arg(long, short = 's')]
        silent_errors: bool,
        /// Colour verdicts: on a terminal (auto), always or never.
        #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
        color: ColorChoice,
        /// Only these Flow fields of each flow, comma-separated paths such as
        /// `time,source.pod_name,verdict` (the server leaves the others out),
        /// as hubble's flag of the same name (`--field-mask`, its newer name,
        /// too).
        #[arg(
            long,
            alias = "field-mask",
            value_delimiter = ',',
            value_name = "FIELDS"
        )]
        experimental_field_mask: Vec<String>,
        /// Read flows saved as JSON lines (`-o json`, or hubble's `-o jsonpb`)
        /// from this file (`-`: standard input) instead of a server; the
        /// filters, --since/--until and --first/--last/--all apply, --follow does not.
        #[arg(long, value_name = "FILE")]
        input_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        query: QueryArgs,
    },
    /// The service dependency graph with the datapath hops of each edge; with
    /// --diff or --against, what changed between two windows.
    Graph {
        #[command(flatten)]
        connect: ConnectArgs,
        #[arg(long, short = 'o', ignore_case = true, value_enum, default_value_t = GraphFormat::Dot)]
        output: GraphFormat,
        #[command(flatten)]
        query: QueryArgs,
        #[command(flatten)]
        diff: DiffArgs,
    },
    /// Health, flow counts and kernel features of a probe or relay, like `hubble status`.
    Status {
        #[command(flatten)]
        connect: ConnectArgs,
        #[arg(long, short = 'o', ignore_case = true, value_enum, default_value_t = observe_cli::status::StatusFormat::Text)]
        output: observe_cli::status::StatusFormat,
    },
    /// Read-only SQL over a relay's flow history (tables `flows`, `graph_nodes`,
    /// `graph_edges`, `policy_states`; functions `policy_whatif`, `policy_replay`).
    Query(observe_cli::query_command::QueryArgs),
    /// What changed in the agents: their start, policies, endpoints,
    /// ipcache entries and services, like `hubble observe agent-events`
    /// (through the relay, every node's).
    AgentEvents(observe_cli::agent_events_command::AgentEventsArgs),
    /// The nodes behind a probe or relay, like `hubble list nodes`.
    Nodes {
        #[command(flatten)]
        connect: ConnectArgs,
        #[arg(long, short = 'o', ignore_case = true, value_enum, default_value_t = observe_cli::status::NodesFormat::Table)]
        output: observe_cli::status::NodesFormat,
    },
    /// Nodes, or the namespaces of recent flows, like `hubble list`.
    List {
        #[command(subcommand)]
        command: ListCommand,
    },
    /// Make certificates for mTLS between the components.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Check, apply or delete policy files (CiliumNetworkPolicy subset) of a
    /// lab, or replay history against drafts (`whatif`).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Build, drive and remove a lab of network namespaces.
    Lab {
        #[command(subcommand)]
        command: LabCommand,
        /// Where the lab keeps its state.
        #[arg(long, visible_alias = "lab", global = true, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Lab up, continuous traffic and `flows --follow`; Ctrl-C tears it all down.
    Demo {
        /// Scenario file; the built-in default without one.
        scenario: Option<PathBuf>,
        /// Each endpoint a Podman container, found by flow-probe through the
        /// Docker Engine API.
        #[arg(long)]
        containers: bool,
        #[arg(long, visible_alias = "lab", default_value = "/run/observe-demo")]
        state_dir: PathBuf,
        /// Output format. Without one, the terminal UI opens on a terminal;
        /// otherwise flows print as compact lines.
        #[arg(long, short = 'o', ignore_case = true, value_enum)]
        output: Option<Format>,
    },
    /// Print the shell completion script, like `hubble completion`: e.g.
    /// `source <(observe completion bash)`, or save it where the shell
    /// loads completions from.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum ListCommand {
    /// The nodes behind a probe or relay, like `hubble list nodes` (also
    /// `observe nodes`).
    #[command(alias = "node")]
    Nodes {
        #[command(flatten)]
        connect: ConnectArgs,
        #[arg(long, short = 'o', ignore_case = true, value_enum, default_value_t = observe_cli::status::NodesFormat::Table)]
        output: observe_cli::status::NodesFormat,
    },
    /// The namespaces of recent flows, like `hubble list namespaces`.
    Namespaces {
        #[command(flatten)]
        connect: ConnectArgs,
        #[arg(long, short = 'o', ignore_case = true, value_enum, default_value_t = observe_cli::status::NodesFormat::Table)]
        output: observe_cli::status::NamespacesFormat,
    },
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Write a CA, a server certificate (for flow-probe and the relay) and a
    /// client certificate (for the relay and observe) into DIR, owner-only.
    Generate {
        /// The folder to write into (created if missing).
        dir: PathBuf,
        /// More names the server certificate is valid for (DNS names or IP
        /// addresses), besides 127.0.0.1, ::1 and localhost.
        names: Vec<String>,
        /// Days the certificates are valid.
        #[arg(long, default_value_t = observe_lab::certs::DEFAULT_VALID_DAYS)]
        valid_days: u32,
        /// Replace certificates already in DIR.
        #[arg(long)]
        force: bool,
    },
}

/// The lab a policy command changes; `--lab` too, as the commands that
/// talk to a lab's servers call it.
#[derive(Debug, clap::Args)]
struct LabDir {
    /// The lab's state directory.
    #[arg(long, visible_alias = "lab", value_name = "STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Parse a policy file and report what is wrong with it.
    Check { file: PathBuf },
    /// Validate a policy file and install it in the lab; probes apply it at once.
    Apply {
        file: PathBuf,
        #[command(flatten)]
        lab: LabDir,
    },
    /// Remove an installed policy: the file holding it in the lab's policy
    /// folder goes (with any other policy in it).
    Delete {
        /// The file's name there (`deny-client.yaml`), or the policy's
        /// `namespace/name` as `apply` printed it (or its name alone when
        /// one file holds it).
        name: String,
        #[command(flatten)]
        lab: LabDir,
    },
    /// What draft policies would have done to the flows in a relay's
    /// history: flows that would flip between allowed and denied, by edge.
    /// Exits 3 when a flow allowed today would be denied.
    Whatif(Box<observe_cli::policy_whatif::WhatIfArgs>),
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Build the scenario's endpoints and start a flow-probe per node and
    /// the relay.
    Up {
        /// Scenario file; the built-in default without one.
        scenario: Option<PathBuf>,
        /// Each endpoint a Podman container on an internal network, found by
        /// flow-probe through the Docker Engine API (`podman system service`)
        /// instead of the endpoints file.
        #[arg(long)]
        containers: bool,
    },
    /// Generate the scenario's traffic: one round, or rounds for --duration seconds.
    Traffic {
        /// Keep generating rounds for this many seconds (one round without it),
        /// at most a year.
        #[arg(long, value_name = "SECONDS",
              value_parser = clap::value_parser!(u64).range(0..=MAX_TRAFFIC_SECS))]
        duration: Option<u64>,
    },
    /// Stop the lab's processes and remove its namespaces, state,
    /// certificates and history (logs stay).
    Down,
    /// Restart a node's flow-probe (`node2`) or the relay (`relay`) on the
    /// address it served, e.g. after it was killed.
    Restart {
        /// A node of the lab, or `relay`.
        name: String,
    },
    /// Run one traffic item inside the lab's cgroup and print its report as
    /// JSON (the traffic generator runs service items this way).
    #[command(hide = true)]
    Client {
        /// Index of the item, for the report.
        #[arg(long)]
        item: usize,
        /// The item (JSON of a scenario traffic entry).
        #[arg(long)]
        spec: String,
    },
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = parse();
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => {}
        // The reader went away (`| head`): the output ends there, no error.
        Err(e) if observe_cli::pipe::is_closed(&e) => {}
        Err(e) => {
            observe_cli::pipe::eprint(&format!("observe: {e:#}\n"));
            std::process::exit(exit_status(&e));
        }
    }
}

/// 1 for an error; for the TUI ended by a signal, what a shell expects of a
/// process that signal ended (143 for SIGTERM).
fn exit_status(e: &anyhow::Error) -> i32 {
    e.downcast_ref::<Stopped>().map_or(1, Stopped::exit_status)
}

/// The command line, or exit with clap's message. An error found once the
/// words are parsed (`--not` with no filter after it) shows the usage of the
/// subcommand it belongs to, as clap's own errors do.
fn parse() -> Cli {
    let cmd = without_empty_env(Cli::command());
    let args = observe_cli::go_switches::rewrite(&cmd, std::env::args_os().collect());
    let matches = cmd.get_matches_from(args);
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| {
        let mut root = without_empty_env(Cli::command());
        root.build();
        e.format(innermost(&mut root, &matches)).exit()
    })
}

/// `cmd` with the flags whose variable (HUBBLE_SERVER, HUBBLE_TLS...) is set
/// but empty reading no variable: the Hubble CLI takes an empty one as unset,
/// where clap would parse "" and refuse it.
fn without_empty_env(cmd: clap::Command) -> clap::Command {
    let cmd = cmd.mut_args(|arg| match arg.get_env() {
        Some(name) if std::env::var_os(name).is_some_and(|v| v.is_empty()) => arg.env(None),
        _ => arg,
    });
    let subcommands: Vec<String> = cmd
        .get_subcommands()
        .map(|sub| sub.get_name().to_string())
        .collect();
    subcommands
        .into_iter()
        .fold(cmd, |cmd, name| cmd.mut_subcommand(name, without_empty_env))
}

/// The subcommand `matches` went deepest into.
fn innermost<'a>(cmd: &'a mut clap::Command, matches: &clap::ArgMatches) -> &'a mut clap::Command {
    match matches.subcommand() {
        Some((name, sub)) if cmd.find_subcommand(name).is_some() => innermost(
            cmd.find_subcommand_mut(name).expect("found just above"),
            sub,
        ),
        _ => cmd,
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Flows {
            connect,
            output,
            print_node_name,
            print_policy_names,
            debug,
            print_raw_filters,
            time_format,
            ip_translation,
            numeric,
            silent_errors,
            color,
            experimental_field_mask,
            input_file,
            mut query,
        } => {
            query.field_mask = experimental_field_mask;
            flows::check_field_mask(&query.field_mask, output)?;
            if print_raw_filters {
                let text = flows::raw_filters(&query)?;
                observe_cli::outln!("{}", text.trim_end())?;
                return Ok(());
            }
            let display = flows::Display {
                format: output,
                print_node: print_node_name,
                print_policies: print_policy_names,
                color,
                debug,
                time: time_format,
                ip_translation: ip_translation && !numeric,
                silent: silent_errors,
            };
            if let Some(path) = input_file {
                return flows::run_from_file(&path, &query, display);
            }
            flows::run_with(&connect.target(&DEFAULT_SERVERS)?, &query, display).await
        }
        Command::Graph {
            connect,
            output,
            query,
            diff,
        } => graph_command::run(&connect.target(&DEFAULT_SERVERS)?, &query, &diff, output).await,
        Command::Status { connect, output } => {
            observe_cli::status::status(&connect.target(&DEFAULT_SERVERS)?, output).await
        }
        Command::AgentEvents(args) => observe_cli::agent_events_command::run(args).await,
        Command::Nodes { connect, output }
        | Command::List {
            command: ListCommand::Nodes { connect, output },
        } => observe_cli::status::nodes(&connect.target(&DEFAULT_SERVERS)?, output).await,
        Command::List {
            command: ListCommand::Namespaces { connect, output },
        } => observe_cli::status::namespaces(&connect.target(&DEFAULT_SERVERS)?, output).await,
        Command::Certs {
            command:
                CertsCommand::Generate {
                    dir,
                    names,
                    valid_days,
                    force,
                },
        } => observe_cli::certs_command::generate(&dir, names, valid_days, force),
        Command::Query(args) => observe_cli::query_command::run(args).await,
        Command::Policy { command } => match command {
            PolicyCommand::Check { file } => policy_commands::check(&file),
            PolicyCommand::Apply { file, lab } => policy_commands::apply(&file, &lab.state_dir),
            PolicyCommand::Delete { name, lab } => policy_commands::delete(&name, &lab.state_dir),
            PolicyCommand::Whatif(args) => {
                if observe_cli::policy_whatif::run(*args).await? {
                    std::process::exit(observe_cli::policy_whatif::WOULD_DENY);
                }
                Ok(())
            }
        },
        Command::Lab { command, state_dir } => {
            // SIGINT and SIGTERM end `traffic --duration` after its round,
            // with its summary, and `up` after its step, taking down what
            // it built.
            let stop = Arc::new(AtomicBool::new(false));
            if matches!(
                command,
                LabCommand::Traffic { duration: Some(_) } | LabCommand::Up { .. }
            ) {
                let stop = stop.clone();
                tokio::spawn(async move {
                    observer_runtime::shutdown::signal().await;
                    stop.store(true, Ordering::Relaxed);
                    // A second one when a round does not end.
                    observer_runtime::shutdown::signal().await;
                    std::process::exit(130);
                });
            }
            tokio::task::spawn_blocking(move || match command {
                LabCommand::Up {
                    scenario,
                    containers,
                } => lab_commands::up(scenario.as_deref(), &state_dir, containers, &stop),
                LabCommand::Traffic { duration } => {
                    lab_commands::traffic(&state_dir, duration.map(Duration::from_secs), &stop)
                }
                LabCommand::Down => lab_commands::down(&state_dir),
                LabCommand::Restart { name } => lab_commands::restart(&state_dir, &name),
                LabCommand::Client { item, spec } => {
                    let report = observe_lab::run_client(&state_dir, item, &spec)?;
                    observe_cli::outln!("{}", serde_json::to_string(&report)?)?;
                    Ok(())
                }
            })
            .await?
        }
        Command::Demo {
            scenario,
            containers,
            state_dir,
            output,
        } => lab_commands::demo(scenario, state_dir, containers, output).await,
        Command::Completion { shell } => {
            observe_cli::pipe::print(&completion(shell))?;
            Ok(())
        }
    }
}

/// The completion script of `observe` for `shell`.
fn completion(shell: clap_complete::Shell) -> String {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "observe", &mut script);
    String::from_utf8_lossy(&script).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use observe_cli::tui::signals::Signal;

    #[test]
    fn a_signal_exits_128_plus_its_number() {
        let status = |sig| exit_status(&Stopped(sig).into());
        assert_eq!(status(Signal::Term), 143);
        assert_eq!(status(Signal::Hup), 129);
        assert_eq!(status(Signal::Int), 130);
        // Through a context too, and any other error is 1.
        let wrapped = anyhow::Error::from(Stopped(Signal::Term)).context("flows");
        assert_eq!(exit_status(&wrapped), 143);
        assert_eq!(exit_status(&anyhow::anyhow!("server: gone")), 1);
    }

    /// The demo's `-o`, as parsed, and whether the demo opens the TUI on a
    /// terminal with it.
    fn demo(words: &[&str]) -> (Option<Format>, bool) {
        let cli = Cli::try_parse_from(["observe", "demo"].iter().chain(words)).unwrap();
        let Command::Demo { output, .. } = cli.command else {
            panic!("not the demo: {:?}", cli.command);
        };
        (output, flows::opens_tui(output, true, true))
    }

    #[test]
    fn traffic_durations_past_a_year_are_refused_by_name() {
        let duration = |d: &str| {
            let cli = Cli::try_parse_from(["observe", "lab", "traffic", "--duration", d])?;
            let Command::Lab {
                command: LabCommand::Traffic { duration },
                ..
            } = cli.command
            else {
                panic!("not lab traffic: {:?}", cli.command);
            };
            Ok::<_, clap::Error>(duration)
        };
        assert_eq!(duration("0").unwrap(), Some(0));
        assert_eq!(duration("31536000").unwrap(), Some(MAX_TRAFFIC_SECS));
        for past in ["31536001", "18446744073709551615"] {
            let err = duration(past).unwrap_err().to_string();
            assert!(
                err.contains("--duration") && err.contains("0..=31536000"),
                "{err}"
            );
        }
    }

    #[test]
    fn completion_scripts_name_the_subcommands_and_their_flags() {
        let bash = completion(clap_complete::Shell::Bash);
        assert!(bash.contains("_observe() {"), "{bash}");
        assert!(bash.contains("complete -F _observe"), "{bash}");
        // `observe flows` completes its flags, Hubble's among them.
        assert!(bash.contains("observe__subcmd__flows)"), "{bash}");
        for flag in ["--since", "--from-pod", "--verdict", "--follow"] {
            assert!(bash.contains(flag), "{flag}");
        }
        let zsh = completion(clap_complete::Shell::Zsh);
        assert!(zsh.starts_with("#compdef observe\n"), "{zsh}");
        assert!(zsh.contains("'--server=[Server address"), "{zsh}");
        let fish = completion(clap_complete::Shell::Fish);
        assert!(fish.contains("-a \"query\""), "{fish}");
    }

    #[test]
    fn a_leading_minus_is_a_value_the_flag_itself_judges() {
        let sql =
            |words: &[&str]| match Cli::try_parse_from(["observe", "query"].iter().chain(words)) {
                Ok(Cli {
                    command: Command::Query(q),
                }) => Ok((q.sql, q.output)),
                Ok(other) => panic!("not a query: {other:?}"),
                Err(e) => Err(e.to_string()),
            };
        // A statement that starts with a comment or a minus sign is the SQL.
        assert_eq!(
            sql(&["-- top talkers\nSELECT 1"]),
            Ok((
                Some("-- top talkers\nSELECT 1".into()),
                observe_cli::query_command::QueryFormat::Table
            ))
        );
        assert_eq!(
            sql(&["-o", "json", "-1"]),
            Ok((
                Some("-1".into()),
                observe_cli::query_command::QueryFormat::Json
            ))
        );
        let refused = sql(&["SELECT 1", "--max-rows", "-5"]).unwrap_err();
        assert!(
            refused.starts_with("error: invalid value '-5' for '--max-rows <N>'"),
            "{refused}"
        );
        let port = observe_cli::flows::request::QueryArgs::try_parse_words(["--to-port", "-1"])
            .unwrap()
            .filter_lists()
            .unwrap_err();
        assert_eq!(
            port.to_string(),
            "--to-port \"-1\": not a port number (0 to 65535)"
        );
    }

    /// Hubble's `-D`, a bare `--ip-translation` and its newer
    /// `--field-mask` stopped a pasted hubble command line.
    #[test]
    fn hubbles_debug_short_form_bare_ip_translation_and_field_mask_are_taken() {
        let flows = |words: &[&str]| {
            let cli = Cli::try_parse_from(["observe", "flows"].iter().chain(words)).unwrap();
            let Command::Flows {
                debug,
                ip_translation,
                experimental_field_mask,
                ..
            } = cli.command
            else {
                panic!("not flows");
            };
            (debug, ip_translation, experimental_field_mask)
        };
        let mask = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            flows(&["-D", "--ip-translation", "--field-mask", "uuid,verdict"]),
            (true, true, mask(&["uuid", "verdict"]))
        );
        assert_eq!(
            flows(&["--ip-translation=false"]),
            (false, false, mask(&[]))
        );
        assert_eq!(flows(&[]), (false, true, mask(&[])));
    }

    /// A pasted hubble line sets switches as Go flags: `--follow=false`.
    #[test]
    fn switches_take_go_boolean_values() {
        let flows = |line: &str| {
            let cmd = Cli::command();
            let words = line.split(' ').map(std::ffi::OsString::from).collect();
            let args = observe_cli::go_switches::rewrite(&cmd, words);
            let cli = Cli::from_arg_matches(&cmd.try_get_matches_from(args).unwrap()).unwrap();
            let Command::Flows {
                connect,
                query,
                print_node_name,
                ..
            } = cli.command
            else {
                panic!("not flows");
            };
            (
                query.follow,
                query.filters.all_namespaces,
                connect.tls,
                print_node_name,
            )
        };
        assert_eq!(
            flows("observe flows --follow=false --all-namespaces=true --tls=1 --print-node-name=F"),
            (false, true, true, false)
        );
        assert_eq!(
            flows("observe flows -f=true -A=false --tls=false --print-node-name"),
            (true, false, false, true)
        );
    }

    #[test]
    fn the_demo_opens_the_tui_only_without_o() {
        assert_eq!(demo(&[]), (None, true));
        assert_eq!(demo(&["-o", "compact"]), (Some(Format::Compact), false));
        // As hubble takes them: any case, and `tab`.
        assert_eq!(demo(&["-o", "JSON"]), (Some(Format::Json), false));
        assert_eq!(demo(&["-o", "tab"]), (Some(Format::Table), false));
        assert_eq!(demo(&["-o", "json"]), (Some(Format::Json), false));
    }
}
