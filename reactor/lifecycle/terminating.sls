{#- phoenix/lifecycle/terminating/<instance-id>  ->  orch.retire

    Thin on purpose: any minion can forge this tag; orch.retire re-reads the ledger and AWS first. -#}
{%- set parts = tag.split('/') %}
{%- set instance_id = parts[-1] %}
{%- set matched = instance_id | regex_match('^(i-[0-9a-f]{8,17})$') %}
{%- if parts | length == 4 and matched and matched[0] == instance_id %}
phoenix-retire-{{ instance_id }}:
  runner.state.orchestrate:
    - args:
      - mods: orch.retire
      - pillar: {{ {'instance_id': instance_id} | tojson }}
{%- endif %}
