{#- phoenix/lifecycle/warmup  ->  orch.warmup

    The lifecycle engine fires it when it starts: one no-op orchestration in the reactor's process loads
    what every orch.provision needs (Salt's orchestration machinery, Phoenix's runners, boto3), so the
    first launches after a master start do not each pay for it. The event carries nothing that is used. -#}
phoenix-lifecycle-warmup:
  runner.state.orchestrate:
    - args:
      - mods: orch.warmup
