base:
  'i-*':
    - webapp
