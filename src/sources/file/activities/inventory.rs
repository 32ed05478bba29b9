//! The inventory exports: `aws autoscaling describe-auto-scaling-groups` and
//! `aws ec2 describe-instances` output, read into the instances each group holds (their
//! launch templates, tags, placement, state) without a `serde_json::Value` of the file.

use super::*;

/// Reads inventory exports and merges what each says about an instance; a file that cannot be
/// used, or is truncated, is a problem naming it (the others are still read).
pub(super) fn read_inventory(path: &Path) -> Result<(Vec<InstanceInfo>, InputProblems)> {
    let mut by_id: BTreeMap<String, InstanceInfo> = BTreeMap::new();
    let mut problems = InputProblems::default();
    for file in list_files(path)? {
        let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
        let docs = match typed_documents::<LObj<InventoryDoc>>(&bytes, &file.display().to_string())
        {
            Ok(docs) => docs,
            Err(e) => {
                problems.errors.push(e.to_string());
                continue;
            }
        };
        for (n, doc) in docs.iter().enumerate() {
            let origin = if docs.len() > 1 {
                format!("{} (document {})", file.display(), n + 1)
            } else {
                file.display().to_string()
            };
            if let Some(doc) = &doc.0 {
                problems.warnings.extend(doc.tokens().warning(&origin));
            }
            if let Err(e) = inventory_document(doc.0.as_ref(), &origin, &mut by_id) {
                problems.errors.push(e.to_string());
            }
        }
    }
    Ok((by_id.into_values().collect(), problems))
}

/// An inventory document as far as epitaph reads it: `describe-auto-scaling-groups` or
/// `describe-instances` output.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct InventoryDoc<'a> {
    #[serde(rename = "AutoScalingGroups", default, borrow)]
    pub(super) groups: LSeq<LObj<Group<'a>>>,
    #[serde(rename = "Reservations", default, borrow)]
    pub(super) reservations: LSeq<LObj<Reservation<'a>>>,
    #[serde(rename = "NextToken", default, borrow)]
    pub(super) next_token: LStr<'a>,
    #[serde(rename = "nextToken", default, borrow)]
    pub(super) next_token_logs: LStr<'a>,
}

impl<'a> InventoryDoc<'a> {
    fn tokens(&self) -> Tokens<'a> {
        Tokens {
            next_token: self.next_token.clone(),
            next_token_logs: self.next_token_logs.clone(),
        }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct Group<'a> {
    #[serde(rename = "AutoScalingGroupName", default, borrow)]
    pub(super) name: LStr<'a>,
    #[serde(rename = "Instances", default, borrow)]
    pub(super) instances: LSeq<LObj<GroupInstance<'a>>>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct GroupInstance<'a> {
    #[serde(rename = "InstanceId", default, borrow)]
    pub(super) id: LStr<'a>,
    #[serde(rename = "AvailabilityZone", default, borrow)]
    pub(super) availability_zone: LStr<'a>,
    #[serde(rename = "LifecycleState", default, borrow)]
    pub(super) lifecycle_state: LStr<'a>,
    #[serde(rename = "LaunchConfigurationName", default, borrow)]
    pub(super) launch_configuration: LStr<'a>,
    /// Some when the key is there at all (a template reference even if it names nothing).
    #[serde(
        rename = "LaunchTemplate",
        default,
        borrow,
        deserialize_with = "present"
    )]
    pub(super) launch_template: Option<LObj<TemplateRef<'a>>>,
    #[serde(rename = "LaunchTime", default, borrow)]
    pub(super) launch_time: LStr<'a>,
}

/// A field that is there, whatever its value (`null` included).
pub(super) fn present<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    d: D,
) -> std::result::Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct TemplateRef<'a> {
    #[serde(rename = "LaunchTemplateId", default, borrow)]
    pub(super) id: LStr<'a>,
    #[serde(rename = "LaunchTemplateName", default, borrow)]
    pub(super) name: LStr<'a>,
    #[serde(rename = "Version", default, borrow)]
    pub(super) version: LStr<'a>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct Reservation<'a> {
    #[serde(rename = "Instances", default, borrow)]
    pub(super) instances: LSeq<LObj<Ec2Instance<'a>>>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct Ec2Instance<'a> {
    #[serde(rename = "InstanceId", default, borrow)]
    pub(super) id: LStr<'a>,
    #[serde(rename = "LaunchTime", default, borrow)]
    pub(super) launch_time: LStr<'a>,
    #[serde(rename = "PrivateDnsName", default, borrow)]
    pub(super) private_dns: LStr<'a>,
    #[serde(rename = "PrivateIpAddress", default, borrow)]
    pub(super) private_ip: LStr<'a>,
    #[serde(rename = "State", default, borrow)]
    pub(super) state: LObj<Named<'a>>,
    #[serde(rename = "Placement", default, borrow)]
    pub(super) placement: LObj<Placement<'a>>,
    #[serde(rename = "Tags", default, borrow)]
    pub(super) tags: LSeq<LObj<Tag<'a>>>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct Named<'a> {
    #[serde(rename = "Name", default, borrow)]
    pub(super) name: LStr<'a>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct Placement<'a> {
    #[serde(rename = "AvailabilityZone", default, borrow)]
    pub(super) availability_zone: LStr<'a>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct Tag<'a> {
    #[serde(rename = "Key", default, borrow)]
    pub(super) key: LStr<'a>,
    #[serde(rename = "Value", default, borrow)]
    pub(super) value: LStr<'a>,
}

/// What one `describe-auto-scaling-groups` or `describe-instances` document says (None: the
/// document is not a JSON object).
pub(super) fn inventory_document(
    doc: Option<&InventoryDoc<'_>>,
    origin: &str,
    by_id: &mut BTreeMap<String, InstanceInfo>,
) -> Result<()> {
    let owned = |s: &LStr<'_>| s.get().map(str::to_string);
    if let Some(groups) = doc.and_then(|d| d.groups.0.as_ref()) {
        for g in groups.iter().filter_map(|g| g.0.as_ref()) {
            let asg = owned(&g.name);
            for inst in g.instances.items().filter_map(|i| i.0.as_ref()) {
                let Some(id) = inst.id.get() else {
                    continue;
                };
                let e = entry(by_id, id);
                e.asg = e.asg.take().or_else(|| asg.clone());
                e.availability_zone = owned(&inst.availability_zone);
                e.lifecycle_state = owned(&inst.lifecycle_state);
                e.launch_configuration = owned(&inst.launch_configuration);
                if let Some(lt) = &inst.launch_template {
                    let lt = lt.0.as_ref();
                    e.launch_template = Some(LaunchTemplateRef {
                        id: lt.and_then(|l| owned(&l.id)),
                        name: lt.and_then(|l| owned(&l.name)),
                        version: lt.and_then(|l| owned(&l.version)),
                    });
                }
                if let Some(t) = inst.launch_time.get().and_then(|s| parse_instant(s).ok()) {
                    e.launch_time = Some(t);
                }
            }
        }
    } else if let Some(reservations) = doc.and_then(|d| d.reservations.0.as_ref()) {
        for r in reservations.iter().filter_map(|r| r.0.as_ref()) {
            for inst in r.instances.items().filter_map(|i| i.0.as_ref()) {
                let Some(id) = inst.id.get() else {
                    continue;
                };
                let e = entry(by_id, id);
                if let Some(t) = inst.launch_time.get().and_then(|s| parse_instant(s).ok()) {
                    e.launch_time = Some(t);
                }
                // An instance that is gone has an empty PrivateDnsName and no address.
                let non_empty = |v: &LStr<'_>| {
                    v.get()
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(str::to_string)
                };
                if let Some(dns) = non_empty(&inst.private_dns) {
                    e.private_dns = Some(dns);
                }
                if let Some(ip) = non_empty(&inst.private_ip) {
                    e.private_ip = Some(ip);
                }
                if let Some(state) = inst.state.0.as_ref().and_then(|s| s.name.get()) {
                    e.ec2_state = Some(state.to_string());
                }
                if let Some(az) = inst
                    .placement
                    .0
                    .as_ref()
                    .and_then(|p| p.availability_zone.get())
                {
                    e.availability_zone = Some(az.to_string());
                }
                for tag in inst.tags.items().filter_map(|t| t.0.as_ref()) {
                    if let (Some(k), Some(v)) = (tag.key.get(), tag.value.get()) {
                        if k == "aws:autoscaling:groupName" {
                            e.asg = Some(v.to_string());
                        }
                        e.tags.insert(k.to_string(), v.to_string());
                    }
                }
            }
        }
    } else {
        return Err(Error::input(
            origin,
            "not an inventory export: expected describe-auto-scaling-groups (\"AutoScalingGroups\") or describe-instances (\"Reservations\") output",
        ));
    }
    Ok(())
}

pub(super) fn entry<'a>(
    map: &'a mut BTreeMap<String, InstanceInfo>,
    id: &str,
) -> &'a mut InstanceInfo {
    map.entry(id.to_string()).or_insert_with(|| InstanceInfo {
        instance_id: id.to_string(),
        ..Default::default()
    })
}
