//! The scaling engine against moto: launches are tagged, tokens recorded, never doubled.

use super::moto::Moto;
use super::util::{Deployment, describe, stdout};

#[test]
fn scale_up_launches_exactly_step_up_tagged_instances_and_a_lost_id_list_launches_nothing_new() {
    let moto = Moto::start();
    moto.security_group("web");
    let mut deployment = Deployment::new(&moto.url);
    // No HAProxy stats here (the socket does not exist): the metric is missing, so only the
    // bounds act — min = 2 with nothing running asks for step_up = 2 launches.
    deployment.haproxy_toml.push_str(&format!(
        "stats_socket = \"{}\"\n",
        deployment.path("haproxy/missing.sock").display()
    ));
    deployment.pool_toml = "[[pool]]\nname = \"web\"\nport = 8080\nready_check = \"none\"\n\
[pool.discover]\nsecurity_group = \"web\"\n\
[pool.launch]\nimage_id = \"ami-12345678\"\ninstance_type = \"t3.micro\"\ntags = { role = \"web\" }\n\
[pool.scaling]\nmin = 2\nmax = 4\nstep_up = 2\nscale_up_above = 20\nscale_down_below = 5\n"
        .to_owned();

    deployment
        .run(&[])
        .exits(0)
        .printed("launch 2 instance(s) for pool web");
    let instances = moto.all_instances();
    assert_eq!(instances.len(), 2, "{instances:?}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(deployment.state_path()).unwrap()).unwrap();
    let intent = &state["pools"]["web"]["launches"][0];
    let token = intent["token"].as_str().unwrap().to_owned();
    let mut recorded: Vec<String> = intent["instance_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    recorded.sort();
    assert_eq!(recorded, instances.keys().cloned().collect::<Vec<_>>());
    for id in instances.keys() {
        let tags = moto.tags(id);
        assert_eq!(
            tags.get("haproxy-autoscaler:pool").map(String::as_str),
            Some("web"),
            "{tags:?}"
        );
        assert_eq!(tags.get("haproxy-autoscaler:launch-token"), Some(&token));
        assert_eq!(tags.get("role").map(String::as_str), Some("web"));
    }

    // As if the run had crashed between RunInstances and saving the ids.
    let mut crashed = state.clone();
    crashed["pools"]["web"]["launches"][0]["instance_ids"] = serde_json::Value::Null;
    std::fs::write(
        deployment.state_path(),
        serde_json::to_vec_pretty(&crashed).unwrap(),
    )
    .unwrap();
    let second = deployment.run(&[]).exits(0);
    assert!(!stdout(&second).contains("launch"), "{}", describe(&second));
    assert_eq!(moto.all_instances().len(), 2, "nothing launched again");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(deployment.state_path()).unwrap()).unwrap();
    assert!(
        state["pools"]["web"].get("launches").is_none(),
        "the intent was resolved: {state}"
    );
}
