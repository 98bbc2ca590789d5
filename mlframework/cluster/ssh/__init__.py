"""How hosts are reached: SSH sessions (Fabric/paramiko), their channels, Docker over SSH, steps on many hosts."""
