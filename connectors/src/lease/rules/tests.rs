use super::*;

const DURATION: Duration = Duration::from_secs(10);

fn lease(shard: &str, owner: Option<&str>, counter: u64) -> Lease {
    Lease {
        shard_id: shard.into(),
        owner: owner.map(str::to_owned),
        counter,
        ..Lease::default()
    }
}

/// Plans for `me` holding `held`, with every lease observed `ago` before now.
fn plan_for(me: &str, leases: &[Lease], held: &[&str], ago: Duration) -> Plan {
    plan_after_handover(me, leases, held, &[], ago)
}

/// [`plan_for`], `me` having just handed `handed_over` over.
fn plan_after_handover(
    me: &str,
    leases: &[Lease],
    held: &[&str],
    handed_over: &[&str],
    ago: Duration,
) -> Plan {
    let handed_over: HashSet<String> = handed_over.iter().map(|s| s.to_string()).collect();
    let now = Instant::now();
    let mut observations = Observations::default();
    observations.observe(leases, now - ago);
    let listed: HashSet<&str> = leases.iter().map(|l| l.shard_id.as_str()).collect();
    let held: HashSet<String> = held.iter().map(|s| s.to_string()).collect();
    plan(&View {
        me,
        leases,
        listed: &listed,
        held: &held,
        handed_over: &handed_over,
        observations: &observations,
        now,
        lease_duration: DURATION,
    })
}

fn shards(n: usize, owner: Option<&str>) -> Vec<Lease> {
    (0..n)
        .map(|i| lease(&format!("shard-{i}"), owner, 1))
        .collect()
}

#[test]
fn a_lease_just_handed_over_is_not_taken_back_but_another_free_one_is() {
    // `a` held shard-0..2 and handed shard-0 over; shard-0 and shard-3 look free.
    let mut leases = shards(4, Some("a"));
    leases[0].owner = None;
    leases[3].owner = None;
    let plan = plan_after_handover(
        "a",
        &leases,
        &["shard-1", "shard-2"],
        &["shard-0"],
        Duration::ZERO,
    );
    assert_eq!(plan.take, ["shard-3"]);
}

#[test]
fn a_lone_instance_takes_every_free_lease() {
    let plan = plan_for("a", &shards(3, None), &[], Duration::ZERO);
    assert_eq!(plan.take, ["shard-0", "shard-1", "shard-2"]);
    assert_eq!(plan.request, None);
}

#[test]
fn a_lease_expires_only_when_its_counter_stood_still_for_the_duration() {
    let now = Instant::now();
    let mut seen = Observations::default();
    let held = lease("s", Some("b"), 7);
    seen.observe(std::slice::from_ref(&held), now - DURATION);
    assert!(seen.is_expired(&held, now, DURATION));
    assert!(!seen.is_expired(&held, now - Duration::from_millis(1), DURATION));

    // A renewal (new counter) restarts the wait from when it was seen.
    let renewed = lease("s", Some("b"), 8);
    seen.observe(std::slice::from_ref(&renewed), now);
    assert!(!seen.is_expired(&renewed, now + DURATION / 2, DURATION));
    assert!(seen.is_expired(&renewed, now + DURATION, DURATION));

    // A free lease never expires (it is available anyway), an unseen one not yet.
    assert!(!seen.is_expired(&lease("s", None, 8), now + DURATION, DURATION));
    assert!(!seen.is_expired(&lease("t", Some("b"), 1), now + DURATION, DURATION));
}

#[test]
fn a_dead_instances_leases_are_taken_after_expiry_only() {
    let leases = shards(4, Some("dead"));
    let fresh = plan_for("a", &leases, &[], DURATION / 2);
    assert!(fresh.take.is_empty(), "{fresh:?}");
    let expired = plan_for("a", &leases, &[], DURATION);
    assert_eq!(expired.take.len(), 4, "the dead owner no longer counts");
}

#[test]
fn two_instances_split_free_leases_evenly() {
    let mut leases = shards(4, None);
    leases[0].owner = Some("a".into());
    leases[1].owner = Some("a".into());
    let plan = plan_for("b", &leases, &[], Duration::ZERO);
    assert_eq!(plan.take, ["shard-2", "shard-3"]);
    // a sees b only once b holds leases; then a is at its share.
    leases[2].owner = Some("b".into());
    leases[3].owner = Some("b".into());
    let a = plan_for("a", &leases, &["shard-0", "shard-1"], Duration::ZERO);
    assert_eq!(a, Plan::default());
}

#[test]
fn a_newcomer_asks_the_busiest_owner_for_one_lease_at_a_time() {
    let mut leases = shards(4, Some("a"));
    leases.extend((4..6).map(|i| lease(&format!("shard-{i}"), Some("c"), 1)));
    let plan = plan_for("b", &leases, &[], Duration::ZERO);
    assert!(plan.take.is_empty());
    assert_eq!(plan.request, Some(("shard-0".into(), "a".into())));

    leases[0].pending_owner = Some("b".into());
    let waiting = plan_for("b", &leases, &[], Duration::ZERO);
    assert_eq!(waiting, Plan::default(), "one open request is enough");

    // Released by a: free now, and b takes it.
    leases[0].owner = None;
    leases[0].pending_owner = None;
    let handed = plan_for("b", &leases, &[], Duration::ZERO);
    assert_eq!(handed.take, ["shard-0"]);
}

#[test]
fn a_lease_still_naming_this_instance_is_taken_back_first() {
    // A restart with a stable instance id: its old leases come back before free ones.
    let mut leases = shards(2, None);
    leases[1].owner = Some("a".into());
    let plan = plan_for("a", &leases, &[], Duration::ZERO);
    assert_eq!(plan.take, ["shard-1", "shard-0"]);
}

#[test]
fn no_request_when_moving_a_lease_would_not_narrow_the_gap() {
    // Three shards, a holds two and b one: as even as it gets.
    let mut leases = shards(3, Some("a"));
    leases[2].owner = Some("b".into());
    let plan = plan_for("b", &leases, &["shard-2"], Duration::ZERO);
    assert_eq!(plan, Plan::default());
}

#[test]
fn children_wait_until_every_listed_parent_ended() {
    let mut parent = lease("p", None, 1);
    let mut child = lease("c", None, 1);
    child.parent_shard_ids = vec!["p".into(), "gone".into()];
    let listed: HashSet<&str> = ["p", "c"].into();
    let leases = vec![parent.clone(), child.clone()];
    assert!(!is_readable(&child, &leases, &listed));
    assert!(is_readable(&parent, &leases, &listed));

    parent.shard_ended = true;
    let leases = vec![parent.clone(), child.clone()];
    assert!(
        is_readable(&child, &leases, &listed),
        "gone is no longer listed"
    );
    assert!(
        !is_readable(&parent, &leases, &listed),
        "an ended shard is done"
    );

    let plan = plan_for("a", &leases, &[], Duration::ZERO);
    assert_eq!(plan.take, ["c"]);
}
