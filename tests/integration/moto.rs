//! moto in server mode on a free loopback port, and a small EC2 client to arrange instances in it.
//!
//! moto hands out 10.x addresses: nothing here connects to them, and `scripts/test.sh` runs the
//! tests inside a private network namespace so a mistake cannot leave the machine.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{InstanceStateName, ResourceType, Tag, TagSpecification};

use super::util::{find_program, free_port};

/// A moto server, killed when dropped.
pub(crate) struct Moto {
    child: Child,
    pub url: String,
    runtime: tokio::runtime::Runtime,
    client: Client,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    pub(crate) fn start() -> Moto {
        let program = find_program("moto_server", "MOTO_SERVER");
        let port = free_port();
        let mut child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start `{}`: {error}", program.display()));
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("moto exited ({status}) before listening on port {port}");
            }
            assert!(
                Instant::now() < deadline,
                "moto did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new("us-east-1"))
            .endpoint_url(&url)
            .credentials_provider(aws_sdk_ec2::config::Credentials::for_tests())
            .build();
        Moto {
            child,
            url,
            runtime,
            client: Client::from_conf(config),
        }
    }

    /// Creates a security group and returns its id.
    pub(crate) fn security_group(&self, name: &str) -> String {
        self.runtime
            .block_on(
                self.client
                    .create_security_group()
                    .group_name(name)
                    .description("test")
                    .send(),
            )
            .expect("create security group")
            .group_id()
            .expect("group id")
            .to_owned()
    }

    /// Launches `count` instances in security group `group` with `tags`; returns their ids.
    pub(crate) fn launch(&self, group: &str, count: i32, tags: &[(&str, &str)]) -> Vec<String> {
        let mut request = self
            .client
            .run_instances()
            .image_id("ami-12345678")
            .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
            .min_count(count)
            .max_count(count)
            .security_groups(group);
        if !tags.is_empty() {
            let spec = tags.iter().fold(
                TagSpecification::builder().resource_type(ResourceType::Instance),
                |spec, (key, value)| spec.tags(Tag::builder().key(*key).value(*value).build()),
            );
            request = request.tag_specifications(spec.build());
        }
        let output = self
            .runtime
            .block_on(request.send())
            .expect("run instances");
        output
            .instances()
            .iter()
            .map(|instance| instance.instance_id().expect("id").to_owned())
            .collect()
    }

    pub(crate) fn terminate(&self, ids: &[String]) {
        self.runtime
            .block_on(
                self.client
                    .terminate_instances()
                    .set_instance_ids(Some(ids.to_vec()))
                    .send(),
            )
            .expect("terminate");
    }

    /// Every instance id and its state, for before/after comparisons.
    pub(crate) fn all_instances(&self) -> BTreeMap<String, String> {
        let output = self
            .runtime
            .block_on(self.client.describe_instances().send())
            .expect("describe");
        output
            .reservations()
            .iter()
            .flat_map(aws_sdk_ec2::types::Reservation::instances)
            .map(|instance| {
                (
                    instance.instance_id().unwrap_or_default().to_owned(),
                    instance
                        .state()
                        .and_then(|state| state.name())
                        .map(InstanceStateName::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect()
    }

    /// The tags of one instance.
    pub(crate) fn tags(&self, id: &str) -> BTreeMap<String, String> {
        let output = self
            .runtime
            .block_on(self.client.describe_instances().instance_ids(id).send())
            .expect("describe");
        output
            .reservations()
            .iter()
            .flat_map(aws_sdk_ec2::types::Reservation::instances)
            .flat_map(aws_sdk_ec2::types::Instance::tags)
            .map(|tag| {
                (
                    tag.key().unwrap_or_default().to_owned(),
                    tag.value().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    fn s3(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&self.url)
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::for_tests())
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    pub(crate) fn create_bucket(&self, bucket: &str) {
        self.runtime
            .block_on(self.s3().create_bucket().bucket(bucket).send())
            .expect("create bucket");
    }

    /// Writes an object, as another writer of the bucket would.
    pub(crate) fn put_object(&self, bucket: &str, key: &str, bytes: Vec<u8>) {
        let client = self.s3();
        self.runtime
            .block_on(
                client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(bytes.into())
                    .send(),
            )
            .expect("put object");
    }

    /// The object's bytes, or `None` when there is none.
    pub(crate) fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let client = self.s3();
        self.runtime.block_on(async {
            let output = client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .ok()?;
            Some(output.body.collect().await.expect("read object").to_vec())
        })
    }
}
