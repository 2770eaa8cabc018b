{#- Highstate of the instances in the full-cycle test: what production runs, with the test's stand-ins. -#}
base:
  'i-*':
    - provision_test
    - os_updates
    - deployed_commit
    - webapp
