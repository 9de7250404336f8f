-- SCIM needs a group id that survives renames, and the group's externalId.
ALTER TABLE groups ADD COLUMN scim_id TEXT;
ALTER TABLE groups ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX groups_scim_id ON groups (scim_id);
