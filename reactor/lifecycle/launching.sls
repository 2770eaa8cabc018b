{#- phoenix/lifecycle/launching/<instance-id>  ->  orch.provision

    Thin on purpose: any minion can forge this tag, so nothing from the event is trusted beyond the
    instance id's shape; orch.provision re-reads the ledger and AWS before it does anything. The id is
    taken from the tag (what Salt routed on), checked against ^i-[0-9a-f]{8,17}$ and handed over with
    |tojson, never pasted into YAML. -#}
{%- set parts = tag.split('/') %}
{%- set instance_id = parts[-1] %}
{%- set matched = instance_id | regex_match('^(i-[0-9a-f]{8,17})$') %}
{%- if parts | length == 4 and matched and matched[0] == instance_id %}
phoenix-provision-{{ instance_id }}:
  runner.state.orchestrate:
    - args:
      - mods: orch.provision
      - pillar: {{ {'instance_id': instance_id} | tojson }}
{%- endif %}
