"""The workflows kind: `workflows/*.yaml` of the config repo, DAGs of steps run on a schedule,
on an event or by hand, validated at load and recorded in the store for the workflow engine."""
