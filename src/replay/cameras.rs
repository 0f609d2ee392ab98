//! Which camera each replayed topic is, when several are replayed: the params file's
//! `cameras` in topic order, or names derived from the topics (`/front_camera/color/image_raw`
//! -> `front_camera_color`), each a ROS name token as the node's `cameras` parameter takes.

use crate::node::names::{check_camera_name, NameError};

/// Camera names that cannot be given to the replayed topics.
#[derive(Debug, thiserror::Error)]
pub enum CameraError {
    #[error(
        "parameter `cameras` names {} cameras ({}) for {topics} replayed topics: give as many \
         as topics (the i-th camera is the i-th topic's) or none (names derived from the topics)",
        cameras.len(),
        cameras.join(", ")
    )]
    Count { cameras: Vec<String>, topics: usize },
    #[error("topic {topic}: {cause}")]
    Name { topic: String, cause: NameError },
}

/// A topic's last segments that name the image, not the camera (image_pipeline's names).
const IMAGE_SEGMENTS: [&str; 5] = [
    "image_raw",
    "image_rect_color",
    "image_rect",
    "image_color",
    "image",
];

/// The camera name a topic suggests: without a trailing `/compressed` and then a trailing
/// image segment (`image_raw`, `image_rect_color`, `image_rect`, `image_color`, `image`),
/// the rest as one ROS name token (every character but `[A-Za-z0-9_]` becomes `_`, no
/// leading, trailing or doubled `_`, `c` before a leading digit). Empty when nothing is
/// left (`/image_raw`).
pub fn camera_from_topic(topic: &str) -> String {
    let mut rest = topic.trim_end_matches('/');
    rest = rest.strip_suffix("/compressed").unwrap_or(rest);
    if let Some((head, last)) = rest.rsplit_once('/') {
        if IMAGE_SEGMENTS.contains(&last) {
            rest = head;
        }
    } else if IMAGE_SEGMENTS.contains(&rest) {
        rest = "";
    }
    let mut name = String::with_capacity(rest.len() + 1);
    for c in rest.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if c == '_' && (name.is_empty() || name.ends_with('_')) {
            continue;
        }
        name.push(c);
    }
    while name.ends_with('_') {
        name.pop();
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, 'c');
    }
    name
}

/// The camera of each of `topics` (several): `configured` (the `cameras` parameter) when it
/// has one name per topic, else derived from the topics ([`camera_from_topic`]); a name that
/// is empty or taken by an earlier topic becomes `camera_<i>` (i from 1).
pub fn camera_names(topics: &[&str], configured: &[String]) -> Result<Vec<String>, CameraError> {
    let names: Vec<String> = if configured.is_empty() {
        let mut names: Vec<String> = Vec::with_capacity(topics.len());
        for (i, topic) in topics.iter().enumerate() {
            let mut name = camera_from_topic(topic);
            if name.is_empty() || names.contains(&name) {
                name = format!("camera_{}", i + 1);
                // Only if a topic itself suggested `camera_<i>`.
                let mut k = 2;
                while names.contains(&name) {
                    name = format!("camera_{}_{k}", i + 1);
                    k += 1;
                }
            }
            names.push(name);
        }
        names
    } else if configured.len() == topics.len() {
        configured.to_vec()
    } else {
        return Err(CameraError::Count {
            cameras: configured.to_vec(),
            topics: topics.len(),
        });
    };
    for (topic, name) in topics.iter().zip(&names) {
        check_camera_name(name).map_err(|cause| CameraError::Name {
            topic: topic.to_string(),
            cause,
        })?;
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_names_its_camera() {
        for (topic, camera) in [
            ("/front_camera/color/image_raw", "front_camera_color"),
            (
                "/front_camera/color/image_raw/compressed",
                "front_camera_color",
            ),
            ("/cam/image", "cam"),
            ("/left/image_rect_color", "left"),
            ("/stereo/right/image_rect", "stereo_right"),
            ("/wrist/image_color", "wrist"),
            // Only the last segment is the image's; `image` elsewhere is the camera's.
            ("/image/camera", "image_camera"),
            ("/robot1/head/rgb", "robot1_head_rgb"),
            ("/_odd__name_/image", "odd_name"),
            ("/2nd/image_raw", "c2nd"),
            ("/front/compressed", "front"),
            ("/image_raw", ""),
            ("/image_raw/compressed", ""),
            ("image", ""),
            ("/", ""),
        ] {
            assert_eq!(camera_from_topic(topic), camera, "{topic}");
            if !camera.is_empty() {
                check_camera_name(camera).unwrap();
            }
        }
    }

    #[test]
    fn empty_or_repeated_names_fall_back_to_the_position() {
        let names = camera_names(
            &[
                "/image_raw",
                "/a/image",
                "/a/image_raw/compressed",
                "/b/image",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(names, ["camera_1", "a", "camera_3", "b"]);
        // A topic that suggests a fallback name keeps it; the later fallback moves aside.
        let names = camera_names(&["/camera_2/image", "/image"], &[]).unwrap();
        assert_eq!(names, ["camera_2", "camera_2_2"]);
    }

    #[test]
    fn the_cameras_parameter_names_the_topics_in_order() {
        let configured = vec!["head".to_string(), "wrist".to_string()];
        let names = camera_names(&["/x/image", "/y/image"], &configured).unwrap();
        assert_eq!(names, configured);
        let e = camera_names(&["/x/image", "/y/image", "/z/image"], &configured)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("parameter `cameras` names 2 cameras (head, wrist) for 3 replayed topics"),
            "{e}"
        );
    }
}
