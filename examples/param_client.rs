//! A ROS 2 parameter client in the RPC-over-DDS "enhanced" request mapping, the one
//! rmw_fastrtps_cpp uses (the request alone in the payload, the reply matched by its
//! related sample identity), made with ros2-client's own service client. The node tests
//! run it against `clip_node` to check that mapping next to rmw_cyclonedds_cpp's (which
//! the Cyclone DDS peer speaks); without a ROS install it also stands in for
//! `ros2 param`. Run it inside `../shared/tools/private-net` like every DDS process here.
//!
//! ```text
//! param_client NODE list
//! param_client NODE get NAME...
//! param_client NODE set NAME=JSON...        (1.5 double, 2 integer, true, "text", ["a", "b"])
//! param_client NODE describe NAME...
//! ```
//! Prints one JSON line with the answer; exit code 1 when no answer came within 30 s.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use ros2_client::{
    Client, Context, Message, Name, NodeName, NodeOptions, ServiceMapping, ServiceTypeName,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use clip_perception::dds::default_qos;
use clip_perception::node::param_services::from_ros_value;
use clip_perception::ros_msgs::rcl::{
    param_type, DescribeParametersResponse, GetParametersResponse, ListParametersRequest,
    ListParametersResponse, NamesRequest, Parameter, ParameterValue, ParametersRequest,
    SetParametersResponse,
};

/// A message for ros2-client's typed client.
#[derive(Serialize, Deserialize, Clone)]
#[serde(transparent)]
struct Msg<T>(T);

impl<T: Serialize + DeserializeOwned> Message for Msg<T> {}

/// Sends `request` to `<node>/<service>` until an answer comes (a request written before
/// discovery matched the server is lost, so it is sent again every 2 s).
fn call<Req, Resp>(node_fqn: &str, service: &str, ty: &str, request: Req) -> Result<Resp>
where
    Req: Serialize + DeserializeOwned + Clone + 'static,
    Resp: Serialize + DeserializeOwned + 'static,
{
    let context = Context::new().context("DDS participant")?;
    let mut node = context
        .new_node(
            NodeName::new("/", "param_client").map_err(|e| anyhow!("{e:?}"))?,
            NodeOptions::new().enable_rosout(false),
        )
        .context("node")?;
    let name = Name::parse(&format!("{}/{service}", node_fqn.trim_end_matches('/')))
        .map_err(|e| anyhow!("service name: {e:?}"))?;
    let client: Client<Msg<Req>, Msg<Resp>> = node
        .create_client(
            ServiceMapping::Enhanced,
            &name,
            &ServiceTypeName::new("rcl_interfaces", ty),
            default_qos(),
            default_qos(),
        )
        .context("service client")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let id = client
            .send_request(Msg(request.clone()))
            .map_err(|e| anyhow!("sending the request: {e:?}"))?;
        let resend = Instant::now() + Duration::from_secs(2);
        while Instant::now() < resend {
            match client.receive_response() {
                Ok(Some((got, Msg(response)))) if got == id => return Ok(response),
                Ok(Some(_)) => {}
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => bail!("reading the reply: {e:?}"),
            }
        }
    }
    bail!("no answer from {name} within 30 s")
}

/// A JSON value as a ROS parameter value.
fn ros_value(value: &Value) -> Result<ParameterValue> {
    let mut v = ParameterValue::default();
    match value {
        Value::Bool(b) => (v.r#type, v.bool_value) = (param_type::BOOL, *b),
        Value::Number(n) if n.is_i64() => {
            (v.r#type, v.integer_value) = (param_type::INTEGER, n.as_i64().unwrap())
        }
        Value::Number(n) => (v.r#type, v.double_value) = (param_type::DOUBLE, n.as_f64().unwrap()),
        Value::String(s) => (v.r#type, v.string_value) = (param_type::STRING, s.clone()),
        Value::Array(items) => {
            v.r#type = param_type::STRING_ARRAY;
            for item in items {
                let s = item
                    .as_str()
                    .ok_or_else(|| anyhow!("{value}: only string arrays"))?;
                v.string_array_value.push(s.to_string());
            }
        }
        Value::Null | Value::Object(_) => bail!("{value}: not a parameter value"),
    }
    Ok(v)
}

fn run(args: &[String]) -> Result<Value> {
    let (node, command, rest) = match args {
        [node, command, rest @ ..] => (node.as_str(), command.as_str(), rest),
        _ => bail!(
            "usage: param_client NODE (list | get NAME... | set NAME=JSON... | describe NAME...)"
        ),
    };
    let names = NamesRequest {
        names: rest.to_vec(),
    };
    Ok(match command {
        "list" => {
            let r: ListParametersResponse = call(
                node,
                "list_parameters",
                "ListParameters",
                ListParametersRequest::default(),
            )?;
            json!({ "names": r.result.names })
        }
        "get" => {
            let r: GetParametersResponse = call(node, "get_parameters", "GetParameters", names)?;
            let values: Vec<Value> = r
                .values
                .iter()
                .map(|v| from_ros_value(v).unwrap_or(Value::Null))
                .collect();
            json!({ "values": values })
        }
        "set" => {
            let mut parameters = Vec::new();
            for arg in rest {
                let (name, value) = arg
                    .split_once('=')
                    .ok_or_else(|| anyhow!("{arg:?} is not NAME=JSON"))?;
                let value: Value =
                    serde_json::from_str(value).with_context(|| format!("{arg:?}: value"))?;
                parameters.push(Parameter {
                    name: name.to_string(),
                    value: ros_value(&value)?,
                });
            }
            let r: SetParametersResponse = call(
                node,
                "set_parameters",
                "SetParameters",
                ParametersRequest { parameters },
            )?;
            let results: Vec<Value> = r
                .results
                .iter()
                .map(|r| json!({ "successful": r.successful, "reason": r.reason }))
                .collect();
            json!({ "results": results })
        }
        "describe" => {
            let r: DescribeParametersResponse =
                call(node, "describe_parameters", "DescribeParameters", names)?;
            let descriptors: Vec<Value> = r
                .descriptors
                .iter()
                .map(|d| {
                    json!({
                        "name": d.name, "type": d.r#type, "read_only": d.read_only,
                        "description": d.description,
                        "floating_point_range": d.floating_point_range.iter()
                            .map(|r| json!([r.from_value, r.to_value, r.step])).collect::<Vec<_>>(),
                        "integer_range": d.integer_range.iter()
                            .map(|r| json!([r.from_value, r.to_value, r.step])).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({ "descriptors": descriptors })
        }
        other => bail!("unknown command {other:?} (list, get, set, describe)"),
    })
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(answer) => {
            println!("{answer}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
