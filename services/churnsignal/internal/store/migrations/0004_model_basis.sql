-- What a model was fitted on: the orders read (customers is there
-- already), so a scheduled check can tell when the data under a model has
-- grown enough to refit it (a model fitted early in a history import, on a
-- small part of the shop). Models stored before have 0, which counts as
-- grown: they are refit once, at the first check.
ALTER TABLE churn_models ADD COLUMN orders bigint NOT NULL DEFAULT 0;
