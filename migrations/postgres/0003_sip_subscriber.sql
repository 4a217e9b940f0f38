-- The read interface for SIP registrars (Kamailio auth_db and the like).
--
-- Each device keeps the two digest hashes a registrar needs, so a reader of
-- the view never sees a plaintext secret:
--   ha1  = MD5(sip_username ":" realm ":" secret)
--   ha1b = MD5(sip_username "@" realm ":" realm ":" secret)
-- The realm is the domain name. pbx-onboard computes both whenever it writes
-- a secret (new device, `devices rotate-secret`) and fills them for devices
-- made before this migration when it opens the store.
ALTER TABLE devices ADD COLUMN ha1 TEXT;
ALTER TABLE devices ADD COLUMN ha1b TEXT;
ALTER TABLE devices ADD COLUMN secret_rotated_at BIGINT;

-- One row per enabled SIP device of an active user. Disabling a user (or a
-- device) removes the row at once; deleting the user removes the device.
-- This view's columns are a stable interface: add columns, never rename.
CREATE VIEW sip_subscriber AS
SELECT d.sip_username AS username,
       m.name         AS domain,
       d.ha1          AS ha1,
       d.ha1b         AS ha1b,
       u.extension    AS extension,
       d.id           AS device_id
  FROM devices d
  JOIN users u   ON u.id = d.user_id
  JOIN domains m ON m.id = d.domain_id
 WHERE d.device_type = 'sip'
   AND d.enabled = 1
   AND u.status = 'active'
   AND d.ha1 IS NOT NULL;
