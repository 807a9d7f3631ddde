//! Every vector of `docs/reference/hpa-vectors.json` as its own test, named by its id, run
//! through the HPA model; and a check that this list covers the file.

use std::collections::BTreeSet;

use framescale_sim::hpa::vectors::{Outcome, Vector, check, parse};

fn vectors() -> Vec<Vector> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/reference/hpa-vectors.json"
    );
    parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn run(id: &str) {
    let vector = vectors()
        .into_iter()
        .find(|v| v.id == id)
        .unwrap_or_else(|| panic!("no vector {id}"));
    match check(&vector) {
        Outcome::Pass => {}
        other => panic!("{id} ({}): {other:?}", vector.kind),
    }
}

macro_rules! vector_tests {
    ($($name:ident => $id:literal,)*) => {
        $(
            #[test]
            fn $name() {
                run($id);
            }
        )*

        #[test]
        fn every_vector_of_the_file_has_a_test() {
            let listed: BTreeSet<&str> = [$($id),*].into();
            let in_file: BTreeSet<String> = vectors().into_iter().map(|v| v.id).collect();
            let in_file: BTreeSet<&str> = in_file.iter().map(String::as_str).collect();
            assert_eq!(listed, in_file);
        }
    };
}

vector_tests! {
    rc_pods_scale_up => "rc-pods-scale-up",
    rc_pods_unready_ignored_for_non_cpu => "rc-pods-unready-ignored-for-non-cpu",
    rc_pods_scale_down => "rc-pods-scale-down",
    rc_pods_within_tolerance => "rc-pods-within-tolerance",
    rc_pods_missing_ratio_exactly_one => "rc-pods-missing-ratio-exactly-one",
    rc_pods_rolling_update_surge => "rc-pods-rolling-update-surge",
    derived_pods_pending_on_scale_up => "derived-pods-pending-on-scale-up",
    derived_pods_missing_on_scale_down => "derived-pods-missing-on-scale-down",
    rc_object_value_scale_up => "rc-object-value-scale-up",
    rc_object_value_ready_pods_only => "rc-object-value-ready-pods-only",
    rc_object_value_tolerance => "rc-object-value-tolerance",
    rc_object_value_configurable_tolerance => "rc-object-value-configurable-tolerance",
    rc_object_avg_scale_up => "rc-object-avg-scale-up",
    rc_object_avg_scale_down => "rc-object-avg-scale-down",
    rc_object_avg_configurable_tolerance => "rc-object-avg-configurable-tolerance",
    rc_external_value_ready_pods_only => "rc-external-value-ready-pods-only",
    rc_external_value_scale_down => "rc-external-value-scale-down",
    rc_external_value_configurable_tolerance => "rc-external-value-configurable-tolerance",
    rc_external_avg_scale_up => "rc-external-avg-scale-up",
    rc_external_avg_scale_down => "rc-external-avg-scale-down",
    rc_external_avg_configurable_tolerance => "rc-external-avg-configurable-tolerance",
    rc_external_avg_overflow => "rc-external-avg-overflow",
    beh_within_range => "beh-within-range",
    beh_below_min => "beh-below-min",
    beh_max_limit => "beh-max-limit",
    beh_more_than_max => "beh-more-than-max",
    beh_user_pods_down_20 => "beh-user-pods-down-20",
    beh_up_default => "beh-up-default",
    beh_up_percent_gt_pods => "beh-up-percent-gt-pods",
    beh_up_large_pods_no_limit => "beh-up-large-pods-no-limit",
    beh_up_percent_200 => "beh-up-percent-200",
    beh_down_pods_gt_percent => "beh-down-pods-gt-percent",
    beh_down_min5_percent100 => "beh-down-min5-percent100",
    beh_down_pods_5 => "beh-down-pods-5",
    beh_up_events_max => "beh-up-events-max",
    beh_up_events_block => "beh-up-events-block",
    beh_up_events_percent => "beh-up-events-percent",
    beh_up_events_updown => "beh-up-events-updown",
    beh_down_events_pods => "beh-down-events-pods",
    beh_down_events_percent => "beh-down-events-percent",
    beh_down_events_prevent => "beh-down-events-prevent",
    beh_down_events_allow => "beh-down-events-allow",
    limit_up_min_policy => "limit-up-min-policy",
    limit_down_min_policy => "limit-down-min-policy",
    stab_empty => "stab-empty",
    stab_down => "stab-down",
    stab_no_down => "stab-no-down",
    stab_no_up => "stab-no-up",
    stab_up_old_recs => "stab-up-old-recs",
    stab_no_up_when_rec_down => "stab-no-up-when-rec-down",
    legacy_stab_empty => "legacy-stab-empty",
    legacy_stab => "legacy-stab",
    legacy_old => "legacy-old",
    legacy_stab_old => "legacy-stab-old",
    legacy_rules_within => "legacy-rules-within",
    legacy_rules_min => "legacy-rules-min",
    legacy_rules_max => "legacy-rules-max",
    legacy_rules_uplimit => "legacy-rules-uplimit",
    ctl_pods_scale_up => "ctl-pods-scale-up",
    ctl_pods_unready_no_less_scale => "ctl-pods-unready-no-less-scale",
    ctl_pods_scale_down => "ctl-pods-scale-down",
    ctl_pods_tolerance => "ctl-pods-tolerance",
    ctl_object_from_zero => "ctl-object-from-zero",
    ctl_object_from_zero_ignores_tolerance => "ctl-object-from-zero-ignores-tolerance",
    ctl_object_down_to_zero => "ctl-object-down-to-zero",
    ctl_object_avg_down => "ctl-object-avg-down",
    ctl_external_avg_down => "ctl-external-avg-down",
    ctl_stabilize_initial_size => "ctl-stabilize-initial-size",
    ctl_one_invalid_blocks_scale_down => "ctl-one-invalid-blocks-scale-down",
    ctl_one_failed_fetch_blocks_scale_down => "ctl-one-failed-fetch-blocks-scale-down",
    ctl_upscale_cap_behavior => "ctl-upscale-cap-behavior",
    ctl_upscale_cap_max => "ctl-upscale-cap-max",
    ctl_above_max_immediate => "ctl-above-max-immediate",
}
