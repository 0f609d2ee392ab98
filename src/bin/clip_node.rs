//! `clip_node`: the ROS 2 node over DDS. Takes the command line `ros2 run` and
//! `ros2 launch` pass (`--ros-args -r __node:=.. -r __ns:=.. -r from:=to --params-file F
//! -p name:=value`), checks every parameter before loading the model, then runs the node
//! core on the `dds` adapter until SIGINT/SIGTERM. Logs go to stderr; a start-up error is
//! one `error:` line naming the parameter or argument, with exit code 1.

// The binary is always built (colcon's cargo-ament-build installs only binaries whose
// `required-features` are passed explicitly); without the `dds` transport it says so.
#[cfg(not(feature = "dds"))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "error: clip_node was built without a transport: rebuild with the `dds` feature (on by default)"
    );
    std::process::ExitCode::from(1)
}

#[cfg(feature = "dds")]
fn main() -> std::process::ExitCode {
    node::main()
}

#[cfg(feature = "dds")]
mod node {
    use std::process::ExitCode;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use anyhow::{Context, Result};

    use clip_perception::node::{topics, NodePlan, RosArgs, NODE_NAME, PARAMS};

    fn usage() -> String {
        let mut text = format!(
        "{NODE_NAME}: CLIP zero-shot perception node (ROS 2 over DDS)\n\n\
         usage: clip_node [--help] [--version] --ros-args [-r __node:=NAME] [-r __ns:=NS] [-r FROM:=TO]...\n\
         \x20                [--params-file FILE]... [-p NAME:=VALUE]... [--log-level LEVEL]\n\n\
         topics (relative: launch remaps and namespaces them):\n\
         \x20 sub {:<20} sensor_msgs/Image (image_transport: raw)\n\
         \x20 sub {:<20} sensor_msgs/CompressedImage (image_transport: compressed)\n\
         \x20 sub {:<20} std_msgs/String: phrases separated by `;` or newlines\n\
         \x20 pub {:<20} vision_msgs/Classification\n\
         \x20 pub {:<20} vision_msgs/LabelInfo (transient local)\n\
         \x20 pub {:<20} std_msgs/String (JSON)\n\
         \x20 pub {:<20} diagnostic_msgs/DiagnosticArray\n\
         \x20 pub {:<20} rcl_interfaces/Log (every log record)\n\
         \x20 pub {:<20} rcl_interfaces/ParameterEvent\n\
         \x20 sub {:<20} rosgraph_msgs/Clock (use_sim_time: true)\n\
         services: ~/list_parameters, ~/get_parameters, ~/get_parameter_types,\n\
         \x20 ~/describe_parameters, ~/set_parameters, ~/set_parameters_atomically (rcl_interfaces)\n\n\
         environment: ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE (LOCALHOST, SUBNET), ROS_LOCALHOST_ONLY\n\n\
         parameters (read-only ones are fixed at start; the others change at run time):\n",
        topics::IMAGE,
        format!("{}/compressed", topics::IMAGE),
        topics::QUERY,
        topics::CLASSIFICATION,
        topics::LABEL_INFO,
        topics::MATCHES,
        topics::DIAGNOSTICS,
        topics::ROSOUT,
        topics::PARAMETER_EVENTS,
        topics::CLOCK,
    );
        for p in PARAMS {
            let range = p
                .range
                .map(|(lo, hi)| format!(", [{lo}, {hi}]"))
                .unwrap_or_default();
            let read_only = if p.read_only { ", read-only" } else { "" };
            text.push_str(&format!(
                "  {} ({}{range}{read_only}, default {}): {}\n",
                p.name,
                p.ros_type,
                (p.default)(),
                p.description.trim()
            ));
        }
        text
    }

    fn init_logging(args: &RosArgs) {
        let mut builder = env_logger::Builder::new();
        // Our own logs at info; the DDS stack's only from warn (its info level is very chatty).
        builder
        .parse_filters("warn,ros2_client::distributions=error,ros2_client::service=error,rustdds::network::udp_sender=error,clip_perception=info,clip_node=info");
        if let Ok(filter) =
            std::env::var("CLIP_PERCEPTION_LOG").or_else(|_| std::env::var("RUST_LOG"))
        {
            builder.parse_filters(&filter);
        }
        if let Some(filter) = args.log_filter(&args.node_name(NODE_NAME)) {
            builder.parse_filters(&filter);
        }
        let logger = builder.target(env_logger::Target::Stderr).build();
        // Only fails if a logger is already set, which nothing in this program does.
        let _ = clip_perception::dds::rosout::install(logger);
    }

    fn run(args: RosArgs) -> Result<()> {
        let plan = NodePlan::from_args(&args)?;
        for warning in &plan.warnings {
            log::warn!("{warning}");
        }
        log::info!(
            "{}: model {}, {} phrases, image_transport {:?}",
            plan.names.fully_qualified(),
            plan.config.model_dir.display(),
            plan.config.phrases.len(),
            plan.config.input
        );
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
            .context("installing the SIGINT/SIGTERM handler")?;
        clip_perception::dds::run(&plan, stop)?;
        Ok(())
    }

    pub fn main() -> ExitCode {
        let argv: Vec<String> = std::env::args().skip(1).collect();
        let args = match RosArgs::parse(argv) {
            Ok(args) => args,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        if args.user_args.iter().any(|a| a == "-h" || a == "--help") {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        if args.user_args.iter().any(|a| a == "-V" || a == "--version") {
            println!("clip_node {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        init_logging(&args);
        match run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        }
    }
}
