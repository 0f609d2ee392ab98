//! The parameter services on the wire. One DDS server per service keeps each request's
//! payload as bytes ([`RawPayload`]), so that both request layouts are answered: the
//! RPC-over-DDS "enhanced" mapping of rmw_fastrtps_cpp (the request alone; the reply is
//! matched by the related sample identity ros2-client writes) and rmw_cyclonedds_cpp's
//! (a 16-byte `guid, seq` header before the request, echoed before the reply). The
//! answers themselves are [`crate::node::param_services`]'.

use std::fmt;

use ros2_client::dds::rustdds::mio1::{Interest, Registry, Token};
use ros2_client::{Name, Node, Server, ServiceMapping, ServiceTypeName};
use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{dds_error, default_qos, DdsError};
use crate::node::param_services::{answer, ParamService};
use crate::node::NodeCore;

/// Largest request payload read; longer ones are cut here and then fail to decode (no
/// parameter request of this node comes near it).
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// A service payload as bytes: the CDR after the encapsulation header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawPayload(pub Vec<u8>);

impl ros2_client::Message for RawPayload {}

impl Serialize for RawPayload {
    /// Writes the bytes as they are (a CDR tuple of octets has neither length nor padding).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(self.0.len())?;
        for b in &self.0 {
            tuple.serialize_element(b)?;
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for RawPayload {
    /// Reads octets until the payload ends (the CDR reader reports the end as an error,
    /// which ends the payload here).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Octets;
        impl<'de> Visitor<'de> for Octets {
            type Value = RawPayload;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a CDR payload")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawPayload, A::Error> {
                let mut bytes = Vec::new();
                while bytes.len() < MAX_REQUEST_BYTES {
                    match seq.next_element::<u8>() {
                        Ok(Some(b)) => bytes.push(b),
                        Ok(None) | Err(_) => break,
                    }
                }
                Ok(RawPayload(bytes))
            }
        }
        deserializer.deserialize_tuple(MAX_REQUEST_BYTES, Octets)
    }
}

/// The six parameter servers of a node.
pub struct ParamServers {
    servers: Vec<(ParamService, Server<RawPayload, RawPayload>)>,
}

impl ParamServers {
    /// Creates `<node fqn>/<service>` for every parameter service.
    pub fn create(node: &mut Node, fqn: &str) -> Result<ParamServers, DdsError> {
        let mut servers = Vec::new();
        for service in ParamService::ALL {
            let full = format!("{}/{}", fqn.trim_end_matches('/'), service.name());
            let name = Name::parse(&full).map_err(|e| dds_error(format!("service {full}"))(&e))?;
            let server = node
                .create_server::<RawPayload, RawPayload>(
                    ServiceMapping::Enhanced,
                    &name,
                    &ServiceTypeName::new("rcl_interfaces", service.type_name()),
                    default_qos(),
                    default_qos(),
                )
                .map_err(|e| dds_error(format!("service {full}"))(&e))?;
            servers.push((service, server));
        }
        Ok(ParamServers { servers })
    }

    /// Registers every server with `registry`, under tokens `first`, `first + 1`, ...
    pub fn register(&mut self, registry: &Registry, first: usize) -> Result<(), DdsError> {
        for (i, (_, server)) in self.servers.iter_mut().enumerate() {
            registry
                .register(server, Token(first + i), Interest::READABLE)
                .map_err(|e| dds_error("poll registration")(&e))?;
        }
        Ok(())
    }

    /// Answers every waiting request. A set blocks until the core has applied or refused
    /// it (new phrases: a text-encoder call).
    pub fn serve(&self, core: &NodeCore) {
        for (service, server) in &self.servers {
            loop {
                match server.receive_request() {
                    Ok(Some((id, RawPayload(payload)))) => match answer(core, *service, &payload) {
                        Ok(reply) => {
                            if let Err(e) = server.send_response(id, RawPayload(reply)) {
                                log::warn!("{}: the reply could not be sent: {e}", service.name());
                            }
                        }
                        Err(e) => log::warn!("{e}; not answered"),
                    },
                    Ok(None) => break,
                    Err(e) => {
                        log::warn!("{}: a request could not be read: {e}", service.name());
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_payloads_pass_through_cdr_unchanged() {
        let bytes: Vec<u8> = (0..=255).chain([1, 2, 3]).collect();
        let encoded =
            cdr_encoding::to_vec::<_, byteorder::LittleEndian>(&RawPayload(bytes.clone())).unwrap();
        assert_eq!(encoded, bytes);
        let (decoded, _) =
            cdr_encoding::from_bytes::<RawPayload, byteorder::LittleEndian>(&bytes).unwrap();
        assert_eq!(decoded.0, bytes);
    }
}
