//! The answers of ROS 2's parameter services (`~/list_parameters`, `~/get_parameters`,
//! `~/get_parameter_types`, `~/describe_parameters`, `~/set_parameters`,
//! `~/set_parameters_atomically`) and the `/parameter_events` message, from the parameter
//! table ([`super::params::PARAMS`]) and the node core; no transport here. Semantics follow
//! rclpy's parameter service: a value or type asked for an undeclared name is `NOT_SET`,
//! a description asked for one gives an empty answer, and a set is refused with a reason.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::core::NodeCore;
use super::params::{spec, ParamSpec, PARAMS};
use crate::ros_msgs::rcl::{
    param_type, DescribeParametersResponse, FloatingPointRange, GetParameterTypesResponse,
    GetParametersResponse, IntegerRange, ListParametersRequest, ListParametersResponse,
    ListParametersResult, NamesRequest, Parameter, ParameterDescriptor, ParameterEvent,
    ParameterValue, ParametersRequest, SetParametersAtomicallyResponse, SetParametersResponse,
    SetParametersResult,
};
use crate::ros_msgs::Time;

/// The six parameter services, by their names under the node (`~/<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamService {
    List,
    Get,
    GetTypes,
    Describe,
    Set,
    SetAtomically,
}

impl ParamService {
    pub const ALL: [ParamService; 6] = [
        ParamService::List,
        ParamService::Get,
        ParamService::GetTypes,
        ParamService::Describe,
        ParamService::Set,
        ParamService::SetAtomically,
    ];

    /// The service's name relative to the node.
    pub fn name(self) -> &'static str {
        match self {
            ParamService::List => "list_parameters",
            ParamService::Get => "get_parameters",
            ParamService::GetTypes => "get_parameter_types",
            ParamService::Describe => "describe_parameters",
            ParamService::Set => "set_parameters",
            ParamService::SetAtomically => "set_parameters_atomically",
        }
    }

    /// The `rcl_interfaces/srv` type.
    pub fn type_name(self) -> &'static str {
        match self {
            ParamService::List => "ListParameters",
            ParamService::Get => "GetParameters",
            ParamService::GetTypes => "GetParameterTypes",
            ParamService::Describe => "DescribeParameters",
            ParamService::Set => "SetParameters",
            ParamService::SetAtomically => "SetParametersAtomically",
        }
    }
}

/// A request that is not the CDR of its service's request type.
#[derive(Debug, thiserror::Error)]
#[error("{service}: undecodable request: {message}")]
pub struct BadRequest {
    pub service: &'static str,
    pub message: String,
}

/// The `ParameterType` of a parameter.
pub fn type_code(spec: &ParamSpec) -> u8 {
    match spec.ros_type {
        "bool" => param_type::BOOL,
        "integer" => param_type::INTEGER,
        "double" => param_type::DOUBLE,
        "string" => param_type::STRING,
        "string array" => param_type::STRING_ARRAY,
        other => unreachable!("parameter type {other} has no ROS type code"),
    }
}

/// A parameter's value as a ROS `ParameterValue`.
pub fn to_ros_value(spec: &ParamSpec, value: &Value) -> ParameterValue {
    let mut v = ParameterValue {
        r#type: type_code(spec),
        ..Default::default()
    };
    match v.r#type {
        param_type::BOOL => v.bool_value = value.as_bool().unwrap_or_default(),
        param_type::INTEGER => v.integer_value = value.as_i64().unwrap_or_default(),
        param_type::DOUBLE => v.double_value = value.as_f64().unwrap_or_default(),
        param_type::STRING => v.string_value = value.as_str().unwrap_or_default().to_string(),
        _ => {
            v.string_array_value = value
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|s| s.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        }
    }
    v
}

/// A ROS `ParameterValue` as the untyped value the parameter table checks (an integer
/// for a double parameter is taken, as `ros2 param set x 1` sends one).
pub fn from_ros_value(v: &ParameterValue) -> Result<Value, String> {
    Ok(match v.r#type {
        param_type::BOOL => Value::Bool(v.bool_value),
        param_type::INTEGER => Value::from(v.integer_value),
        param_type::DOUBLE => serde_json::Number::from_f64(v.double_value)
            .map(Value::Number)
            .ok_or_else(|| format!("{} is not a finite number", v.double_value))?,
        param_type::STRING => Value::String(v.string_value.clone()),
        param_type::BYTE_ARRAY => Value::from(v.byte_array_value.clone()),
        param_type::BOOL_ARRAY => Value::from(v.bool_array_value.clone()),
        param_type::INTEGER_ARRAY => Value::from(v.integer_array_value.clone()),
        param_type::DOUBLE_ARRAY => Value::from(v.double_array_value.clone()),
        param_type::STRING_ARRAY => Value::from(v.string_array_value.clone()),
        param_type::NOT_SET => return Err("a parameter cannot be undeclared".into()),
        other => return Err(format!("unknown parameter type {other}")),
    })
}

/// A parameter's descriptor: type, description, range, read-only flag.
pub fn descriptor(spec: &ParamSpec) -> ParameterDescriptor {
    let r#type = type_code(spec);
    let mut d = ParameterDescriptor {
        name: spec.name.to_string(),
        r#type,
        description: spec.description.trim().to_string(),
        read_only: spec.read_only,
        ..Default::default()
    };
    if let Some((lo, hi)) = spec.range {
        match r#type {
            param_type::INTEGER => d.integer_range.push(IntegerRange {
                from_value: lo as i64,
                to_value: hi as i64,
                step: 0,
            }),
            _ => d.floating_point_range.push(FloatingPointRange {
                from_value: lo,
                to_value: hi,
                step: 0.0,
            }),
        }
    }
    if spec.name == "smoothing" {
        d.additional_constraints = "less than 1".into();
    }
    d
}

/// `~/list_parameters`: the names under the prefixes (every name without prefixes). The
/// node's names have no `.` namespaces, so `depth` changes nothing and no prefixes are
/// listed.
pub fn list(request: &ListParametersRequest) -> ListParametersResponse {
    let wanted = |name: &str| {
        request.prefixes.is_empty()
            || request.prefixes.iter().any(|p| {
                name == p
                    || name
                        .strip_prefix(p.as_str())
                        .is_some_and(|r| r.starts_with('.'))
            })
    };
    ListParametersResponse {
        result: ListParametersResult {
            names: PARAMS
                .iter()
                .map(|p| p.name.to_string())
                .filter(|n| wanted(n))
                .collect(),
            prefixes: Vec::new(),
        },
    }
}

/// `~/get_parameters`: one value per name, `NOT_SET` for an undeclared one.
pub fn get(core: &NodeCore, request: &NamesRequest) -> GetParametersResponse {
    let values = core.parameters().values();
    GetParametersResponse {
        values: request
            .names
            .iter()
            .map(|name| match (spec(name), values.get(name.as_str())) {
                (Some(spec), Some(value)) => to_ros_value(spec, value),
                _ => ParameterValue::default(),
            })
            .collect(),
    }
}

/// `~/get_parameter_types`: one type per name, `NOT_SET` for an undeclared one.
pub fn get_types(request: &NamesRequest) -> GetParameterTypesResponse {
    GetParameterTypesResponse {
        types: request
            .names
            .iter()
            .map(|name| spec(name).map_or(param_type::NOT_SET, type_code))
            .collect(),
    }
}

/// `~/describe_parameters`: one descriptor per name; none at all if a name is undeclared.
pub fn describe(request: &NamesRequest) -> DescribeParametersResponse {
    let descriptors: Option<Vec<_>> = request
        .names
        .iter()
        .map(|name| spec(name).map(descriptor))
        .collect();
    DescribeParametersResponse {
        descriptors: descriptors.unwrap_or_default(),
    }
}

fn result_of(outcome: Result<(), String>) -> SetParametersResult {
    match outcome {
        Ok(()) => SetParametersResult {
            successful: true,
            reason: String::new(),
        },
        Err(reason) => SetParametersResult {
            successful: false,
            reason,
        },
    }
}

/// The requested changes as (name, untyped value); a value that cannot be one is refused
/// here with its reason.
fn changes(request: &ParametersRequest) -> Vec<Result<(String, Value), String>> {
    request
        .parameters
        .iter()
        .map(|p| {
            from_ros_value(&p.value)
                .map(|v| (p.name.clone(), v))
                .map_err(|e| format!("parameter `{}`: {e}", p.name))
        })
        .collect()
}

/// `~/set_parameters`: each parameter applied on its own, one result each.
pub fn set(core: &NodeCore, request: &ParametersRequest) -> SetParametersResponse {
    let changes = changes(request);
    let good: Vec<(String, Value)> = changes.iter().flatten().cloned().collect();
    let mut applied = core.set_parameters(good, false).into_iter();
    SetParametersResponse {
        results: changes
            .into_iter()
            .map(|c| result_of(c.and_then(|_| applied.next().unwrap_or(Ok(())))))
            .collect(),
    }
}

/// `~/set_parameters_atomically`: all or none.
pub fn set_atomically(
    core: &NodeCore,
    request: &ParametersRequest,
) -> SetParametersAtomicallyResponse {
    let changes: Result<Vec<_>, String> = changes(request).into_iter().collect();
    let outcome = changes.and_then(|c| core.set_parameters(c, true).remove(0));
    SetParametersAtomicallyResponse {
        result: result_of(outcome),
    }
}

/// The `/parameter_events` message for parameters that changed.
pub fn event(node: &str, stamp: Time, changed: &[(&'static str, Value)]) -> ParameterEvent {
    ParameterEvent {
        stamp,
        node: node.to_string(),
        changed_parameters: changed
            .iter()
            .filter_map(|(name, value)| {
                spec(name).map(|spec| Parameter {
                    name: name.to_string(),
                    value: to_ros_value(spec, value),
                })
            })
            .collect(),
        ..Default::default()
    }
}

/// Answers one request payload (the CDR after the encapsulation header, little endian,
/// in either middleware's layout: see [`split_request`]) with the reply payload in the
/// same layout.
pub fn answer(
    core: &NodeCore,
    service: ParamService,
    payload: &[u8],
) -> Result<Vec<u8>, BadRequest> {
    fn respond<Req: DeserializeOwned, Resp: Serialize>(
        service: ParamService,
        payload: &[u8],
        handle: impl FnOnce(Req) -> Resp,
    ) -> Result<Vec<u8>, BadRequest> {
        let (header, request) = split_request::<Req>(payload).ok_or_else(|| BadRequest {
            service: service.name(),
            message: format!(
                "{} bytes are not a {} request in either layout",
                payload.len(),
                service.type_name()
            ),
        })?;
        let mut reply = header.to_vec();
        reply.extend(
            cdr_encoding::to_vec::<Resp, byteorder::LittleEndian>(&handle(request))
                .expect("the rcl_interfaces structs serialize to CDR"),
        );
        Ok(reply)
    }
    match service {
        ParamService::List => respond(service, payload, |r| list(&r)),
        ParamService::Get => respond(service, payload, |r| get(core, &r)),
        ParamService::GetTypes => respond(service, payload, |r| get_types(&r)),
        ParamService::Describe => respond(service, payload, |r| describe(&r)),
        ParamService::Set => respond(service, payload, |r| set(core, &r)),
        ParamService::SetAtomically => respond(service, payload, |r| set_atomically(core, &r)),
    }
}

/// Decodes a CDR body that must be exactly one `T` (at most 3 bytes of padding after it).
pub fn strict_decode<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    match cdr_encoding::from_bytes::<T, byteorder::LittleEndian>(body) {
        Ok((value, used)) if body.len() - used.min(body.len()) <= 3 => Some(value),
        _ => None,
    }
}

/// Tells the two request layouts ROS 2 middlewares use apart: rmw_cyclonedds_cpp puts a
/// 16-byte header (`uint64 guid; int64 seq`) before the request, rmw_fastrtps_cpp (the
/// RPC-over-DDS "enhanced" mapping) sends the request alone. Returns the header (empty
/// for the enhanced layout), to be put back in front of the reply, and the request body.
/// A body that decodes exactly after a 16-byte header is taken as Cyclone's; else the
/// whole payload must decode.
pub fn split_request<T: DeserializeOwned>(payload: &[u8]) -> Option<(&[u8], T)> {
    if payload.len() >= 16 {
        if let Some(request) = strict_decode::<T>(&payload[16..]) {
            return Some((&payload[..16], request));
        }
    }
    strict_decode::<T>(payload).map(|request| (&payload[..0], request))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_has_a_type_code_and_descriptor() {
        for p in PARAMS {
            let d = descriptor(p);
            assert_eq!(d.name, p.name);
            assert_ne!(d.r#type, param_type::NOT_SET, "{}", p.name);
            assert!(!d.description.is_empty());
            let value = (p.default)();
            assert_eq!(
                from_ros_value(&to_ros_value(p, &value)).unwrap(),
                value,
                "{}",
                p.name
            );
        }
        let threshold = descriptor(spec("threshold").unwrap());
        assert_eq!(threshold.floating_point_range[0].to_value, 1.0);
        assert!(descriptor(spec("model_dir").unwrap()).read_only);
        assert_eq!(
            descriptor(spec("threads").unwrap()).integer_range[0].from_value,
            1
        );
    }

    #[test]
    fn unknown_names() {
        let names = NamesRequest {
            names: vec!["threshold".into(), "nope".into()],
        };
        assert_eq!(
            get_types(&names).types,
            vec![param_type::DOUBLE, param_type::NOT_SET]
        );
        assert!(describe(&names).descriptors.is_empty());
        let listed = list(&ListParametersRequest {
            prefixes: vec!["threshold".into()],
            depth: 0,
        });
        assert_eq!(listed.result.names, vec!["threshold"]);
        assert_eq!(
            list(&ListParametersRequest::default()).result.names.len(),
            PARAMS.len()
        );
    }

    #[test]
    fn both_request_layouts_are_recognised() {
        let request = NamesRequest {
            names: vec!["threshold".into(), "labels".into()],
        };
        let body = cdr_encoding::to_vec::<_, byteorder::LittleEndian>(&request).unwrap();
        let (header, got) = split_request::<NamesRequest>(&body).unwrap();
        assert!(header.is_empty());
        assert_eq!(got, request);
        let mut cyclone = 0x1234_5678_9abc_def0_u64.to_le_bytes().to_vec();
        cyclone.extend(7_i64.to_le_bytes());
        cyclone.extend(&body);
        let (header, got) = split_request::<NamesRequest>(&cyclone).unwrap();
        assert_eq!(header, &cyclone[..16]);
        assert_eq!(got, request);
        // `ros2 param list`: no prefixes, depth 0 (16 bytes, the size of a header).
        let list = ListParametersRequest::default();
        let body = cdr_encoding::to_vec::<_, byteorder::LittleEndian>(&list).unwrap();
        let (header, got) = split_request::<ListParametersRequest>(&body).unwrap();
        assert!(header.is_empty());
        assert_eq!(got, list);
        assert!(split_request::<NamesRequest>(&[1, 2, 3]).is_none());
    }
}
