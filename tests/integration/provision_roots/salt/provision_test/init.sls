{#- Stand-in for what an instance's image brings: SSH host keys (the inventory reads their public halves). -#}
{%- set keydir = opts['root_dir'] ~ '/etc/ssh' %}
provision-test-host-key:
  cmd.run:
    - name: ssh-keygen -q -t ed25519 -N '' -C '' -f {{ (keydir ~ '/ssh_host_ed25519_key') | quote }}
    - creates: {{ keydir }}/ssh_host_ed25519_key.pub
    - require:
      - file: provision-test-keydir

provision-test-keydir:
  file.directory:
    - name: {{ keydir }}
    - makedirs: True
