//! Auto Scaling over its Query API, spoken by hand instead of through the SDK crate (minutes
//! of every cold build), as `ec2.rs` speaks EC2: a form-encoded `POST` (`Action=…&
//! Version=2011-01-01`), an XML answer, `NextToken` pagination, errors as
//! `<ErrorResponse><Error><Code>…`. Signing, retries (`Throttling` comes as HTTP 400) and
//! timeouts are the shared transport's (`signed.rs`).
//!
//! Only the two calls epitaph makes — `DescribeAutoScalingGroups` (the inventory) and
//! `DescribeScalingActivities` (terminations) — with only the fields it reads; pagination is
//! the caller's (`activities.rs`).

use super::query::{self, Element};
use super::signed::Endpoint;
use crate::config::AwsConfig;
use crate::error::Result;
use crate::sources::probe::CallError;

/// The Auto Scaling API version the Query API is spoken in.
pub const API_VERSION: &str = "2011-01-01";
/// The SigV4 signing name (and the endpoint's first label).
pub const SERVICE: &str = "autoscaling";
/// The SDK's name of the service (`AWS_ENDPOINT_URL_AUTO_SCALING`).
pub const SERVICE_ID: &str = "Auto Scaling";
/// The operations, as IAM actions (also what calls are counted as).
pub const DESCRIBE_GROUPS: &str = "autoscaling:DescribeAutoScalingGroups";
pub const DESCRIBE_ACTIVITIES: &str = "autoscaling:DescribeScalingActivities";

/// One target's Auto Scaling endpoint.
pub struct AutoScaling {
    endpoint: Endpoint,
}

/// A group as `DescribeAutoScalingGroups` lists it, reduced to what epitaph reads.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Group {
    pub name: Option<String>,
    /// (key, value) of the tags that have a key.
    pub tags: Vec<(String, Option<String>)>,
    pub instances: Vec<Instance>,
}

/// An instance of a group.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Instance {
    pub instance_id: Option<String>,
    pub availability_zone: Option<String>,
    pub lifecycle_state: Option<String>,
    pub launch_configuration_name: Option<String>,
    pub launch_template: Option<LaunchTemplate>,
}

/// The launch template an instance was launched from.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LaunchTemplate {
    pub id: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
}

/// A scaling activity; times as the API sends them (ISO 8601), parsed by the caller.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Activity {
    pub activity_id: Option<String>,
    pub auto_scaling_group_name: Option<String>,
    pub description: Option<String>,
    pub cause: Option<String>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub status_code: Option<String>,
}

/// One page of an answer.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

impl AutoScaling {
    pub fn new(conf: &aws_config::SdkConfig, aws: &AwsConfig) -> Result<AutoScaling> {
        Ok(AutoScaling {
            endpoint: Endpoint::new(SERVICE, SERVICE_ID, conf, aws)?,
        })
    }

    /// Attempts refused as throttled so far, by operation.
    pub fn throttled(&self) -> std::collections::BTreeMap<String, u64> {
        self.endpoint.throttled()
    }

    /// One page of `DescribeAutoScalingGroups`: the named groups, or every group.
    pub async fn describe_groups(
        &self,
        names: Option<&[String]>,
        max_records: i32,
        token: Option<&str>,
    ) -> std::result::Result<Page<Group>, CallError> {
        let body = groups_request(names, max_records, token);
        let root = self.post(DESCRIBE_GROUPS, body).await?;
        query::read_answer(DESCRIBE_GROUPS, parse_groups(&root))
    }

    /// One page of `DescribeScalingActivities`, newest first: one group's, or the account's.
    pub async fn describe_activities(
        &self,
        group: Option<&str>,
        max_records: i32,
        token: Option<&str>,
    ) -> std::result::Result<Page<Activity>, CallError> {
        let body = activities_request(group, max_records, token);
        let root = self.post(DESCRIBE_ACTIVITIES, body).await?;
        query::read_answer(DESCRIBE_ACTIVITIES, parse_activities(&root))
    }

    async fn post(&self, action: &str, body: String) -> std::result::Result<Element, CallError> {
        query::call(&self.endpoint, action, body).await
    }
}

/// The form body of one `DescribeAutoScalingGroups` page.
pub fn groups_request(names: Option<&[String]>, max_records: i32, token: Option<&str>) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("Action", "DescribeAutoScalingGroups")
        .append_pair("Version", API_VERSION);
    for (i, name) in names.unwrap_or_default().iter().enumerate() {
        form.append_pair(&format!("AutoScalingGroupNames.member.{}", i + 1), name);
    }
    form.append_pair("MaxRecords", &max_records.to_string());
    if let Some(t) = token {
        form.append_pair("NextToken", t);
    }
    form.finish()
}

/// The form body of one `DescribeScalingActivities` page.
pub fn activities_request(group: Option<&str>, max_records: i32, token: Option<&str>) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("Action", "DescribeScalingActivities")
        .append_pair("Version", API_VERSION);
    if let Some(g) = group {
        form.append_pair("AutoScalingGroupName", g);
    }
    form.append_pair("MaxRecords", &max_records.to_string());
    if let Some(t) = token {
        form.append_pair("NextToken", t);
    }
    form.finish()
}

/// Reads a `DescribeAutoScalingGroupsResponse`.
pub fn parse_groups(root: &Element) -> std::result::Result<Page<Group>, String> {
    let r = query::result(root, "DescribeAutoScalingGroups")?;
    let items = r
        .members("AutoScalingGroups")
        .map(|g| Group {
            name: g.text_of("AutoScalingGroupName"),
            tags: g
                .members("Tags")
                .filter_map(|t| Some((t.text_of("Key")?, t.text_of("Value"))))
                .collect(),
            instances: g
                .members("Instances")
                .map(|i| Instance {
                    instance_id: i.text_of("InstanceId"),
                    availability_zone: i.text_of("AvailabilityZone"),
                    lifecycle_state: i.text_of("LifecycleState"),
                    launch_configuration_name: i.text_of("LaunchConfigurationName"),
                    launch_template: i.child("LaunchTemplate").map(|lt| LaunchTemplate {
                        id: lt.text_of("LaunchTemplateId"),
                        name: lt.text_of("LaunchTemplateName"),
                        version: lt.text_of("Version"),
                    }),
                })
                .collect(),
        })
        .collect();
    Ok(Page {
        items,
        next_token: r.text_of("NextToken"),
    })
}

/// Reads a `DescribeScalingActivitiesResponse`.
pub fn parse_activities(root: &Element) -> std::result::Result<Page<Activity>, String> {
    let r = query::result(root, "DescribeScalingActivities")?;
    let items = r
        .members("Activities")
        .map(|a| Activity {
            activity_id: a.text_of("ActivityId"),
            auto_scaling_group_name: a.text_of("AutoScalingGroupName"),
            description: a.text_of("Description"),
            cause: a.text_of("Cause"),
            start_time: a.text_of("StartTime"),
            end_time: a.text_of("EndTime"),
            status_code: a.text_of("StatusCode"),
        })
        .collect();
    Ok(Page {
        items,
        next_token: r.text_of("NextToken"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API reference's `DescribeScalingActivities` example answer, with a second
    /// activity (a termination with an entity in its cause) and a token added.
    const ACTIVITIES: &str = r#"<DescribeScalingActivitiesResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">
<DescribeScalingActivitiesResult>
<Activities>
   <member>
      <StatusCode>Failed</StatusCode>
      <Progress>0</Progress>
      <ActivityId>063308ae-aa22-4a9b-94f4-9faeEXAMPLE</ActivityId>
      <StartTime>2012-04-12T17:32:07.882Z</StartTime>
      <AutoScalingGroupName>my-asg</AutoScalingGroupName>
      <Cause>At 2012-04-12T17:31:30Z a user request created an AutoScalingGroup changing the desired capacity from 0 to 1.  At 2012-04-12T17:32:07Z an instance was started in response to a difference between desired and actual capacity, increasing the capacity from 0 to 1.</Cause>
      <Details>{}</Details>
      <Description>Launching a new EC2 instance.  Status Reason: The image id 'ami-4edb0327' does not exist. Launching EC2 instance failed.</Description>
      <EndTime>2012-04-12T17:32:08Z</EndTime>
      <StatusMessage>The image id 'ami-4edb0327' does not exist. Launching EC2 instance failed.</StatusMessage>
   </member>
   <member>
      <StatusCode>Successful</StatusCode>
      <ActivityId>a1b2c3d4-0000-4000-8000-000000000001</ActivityId>
      <StartTime>2012-04-13T08:00:00Z</StartTime>
      <Cause>At 2012-04-13T08:00:00Z an instance was taken out of service in response to an EC2 health check indicating it has been terminated or stopped &amp; replaced.</Cause>
      <Description>Terminating EC2 instance: i-0123456789abcdef0</Description>
   </member>
</Activities>
<NextToken>eyJ0b2tlbiI6IjIifQ==</NextToken>
</DescribeScalingActivitiesResult>
<ResponseMetadata>
   <RequestId>7a641adc-84c5-11e1-a8a5-217ebEXAMPLE</RequestId>
</ResponseMetadata>
</DescribeScalingActivitiesResponse>"#;

    /// The API reference's `DescribeAutoScalingGroups` example answer, with a tag, an instance
    /// launched from a template, and the group's own launch template and mixed-instances
    /// policy (whose names must not be taken for an instance's).
    const GROUPS: &str = r#"<DescribeAutoScalingGroupsResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">
<DescribeAutoScalingGroupsResult>
    <AutoScalingGroups>
      <member>
        <Tags>
          <member>
            <ResourceId>my-asg</ResourceId>
            <PropagateAtLaunch>true</PropagateAtLaunch>
            <Value>test</Value>
            <Key>environment</Key>
            <ResourceType>auto-scaling-group</ResourceType>
          </member>
          <member>
            <Key>empty</Key>
            <Value/>
          </member>
        </Tags>
        <SuspendedProcesses/>
        <AutoScalingGroupName>my-asg</AutoScalingGroupName>
        <HealthCheckType>ELB</HealthCheckType>
        <CreatedTime>2013-05-06T17:47:15.107Z</CreatedTime>
        <EnabledMetrics/>
        <LaunchConfigurationName>my-lc</LaunchConfigurationName>
        <LaunchTemplate>
          <LaunchTemplateName>group-template</LaunchTemplateName>
          <Version>$Latest</Version>
        </LaunchTemplate>
        <MixedInstancesPolicy>
          <LaunchTemplate>
            <LaunchTemplateSpecification>
              <LaunchTemplateId>lt-0000mixed</LaunchTemplateId>
            </LaunchTemplateSpecification>
          </LaunchTemplate>
        </MixedInstancesPolicy>
        <Instances>
          <member>
            <HealthStatus>Healthy</HealthStatus>
            <AvailabilityZone>us-east-1a</AvailabilityZone>
            <InstanceId>i-xxxxxxxx</InstanceId>
            <LaunchConfigurationName>my-lc</LaunchConfigurationName>
            <LifecycleState>InService</LifecycleState>
            <ProtectedFromScaleIn>false</ProtectedFromScaleIn>
          </member>
          <member>
            <HealthStatus>Healthy</HealthStatus>
            <AvailabilityZone>us-east-1b</AvailabilityZone>
            <InstanceId>i-yyyyyyyy</InstanceId>
            <LaunchTemplate>
              <LaunchTemplateId>lt-0123456789abcdef0</LaunchTemplateId>
              <LaunchTemplateName>my-template</LaunchTemplateName>
              <Version>7</Version>
            </LaunchTemplate>
            <LifecycleState>Terminating:Wait</LifecycleState>
          </member>
        </Instances>
        <DesiredCapacity>2</DesiredCapacity>
        <AvailabilityZones>
          <member>us-east-1b</member>
          <member>us-east-1a</member>
        </AvailabilityZones>
        <MinSize>2</MinSize>
        <MaxSize>10</MaxSize>
      </member>
      <member>
        <AutoScalingGroupName>empty-asg</AutoScalingGroupName>
        <Tags/>
        <Instances/>
      </member>
    </AutoScalingGroups>
  </DescribeAutoScalingGroupsResult>
  <ResponseMetadata>
    <RequestId>08c3bedc-8421-11e3-9bb5-bfa219b29cce</RequestId>
  </ResponseMetadata>
</DescribeAutoScalingGroupsResponse>"#;

    #[test]
    fn documented_activities_are_read() {
        let page = parse_activities(&query::parse(ACTIVITIES).unwrap()).unwrap();
        assert_eq!(page.items.len(), 2);
        let a = &page.items[0];
        assert_eq!(
            a.activity_id.as_deref(),
            Some("063308ae-aa22-4a9b-94f4-9faeEXAMPLE")
        );
        assert_eq!(a.status_code.as_deref(), Some("Failed"));
        assert_eq!(a.start_time.as_deref(), Some("2012-04-12T17:32:07.882Z"));
        assert_eq!(a.end_time.as_deref(), Some("2012-04-12T17:32:08Z"));
        assert_eq!(a.auto_scaling_group_name.as_deref(), Some("my-asg"));
        assert!(a.description.as_deref().unwrap().starts_with("Launching"));
        let b = &page.items[1];
        assert_eq!(b.end_time, None);
        assert_eq!(b.auto_scaling_group_name, None);
        assert!(b.cause.as_deref().unwrap().ends_with("stopped & replaced."));
        assert_eq!(page.next_token.as_deref(), Some("eyJ0b2tlbiI6IjIifQ=="));
    }

    #[test]
    fn documented_groups_are_read_with_each_instances_own_template() {
        let page = parse_groups(&query::parse(GROUPS).unwrap()).unwrap();
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.next_token, None);
        let g = &page.items[0];
        assert_eq!(g.name.as_deref(), Some("my-asg"));
        assert_eq!(
            g.tags,
            vec![
                ("environment".to_string(), Some("test".to_string())),
                ("empty".to_string(), None)
            ]
        );
        assert_eq!(g.instances.len(), 2);
        let lc = &g.instances[0];
        assert_eq!(lc.instance_id.as_deref(), Some("i-xxxxxxxx"));
        assert_eq!(lc.availability_zone.as_deref(), Some("us-east-1a"));
        assert_eq!(lc.lifecycle_state.as_deref(), Some("InService"));
        assert_eq!(lc.launch_configuration_name.as_deref(), Some("my-lc"));
        assert_eq!(lc.launch_template, None);
        let lt = &g.instances[1];
        assert_eq!(lt.launch_configuration_name, None);
        assert_eq!(lt.lifecycle_state.as_deref(), Some("Terminating:Wait"));
        assert_eq!(
            lt.launch_template,
            Some(LaunchTemplate {
                id: Some("lt-0123456789abcdef0".into()),
                name: Some("my-template".into()),
                version: Some("7".into()),
            })
        );
        let empty = &page.items[1];
        assert!(empty.tags.is_empty() && empty.instances.is_empty());
    }

    #[test]
    fn wrong_or_broken_answers_are_errors() {
        let other = query::parse("<DescribeInstancesResponse/>").unwrap();
        assert!(parse_groups(&other).is_err());
        assert!(parse_activities(&other).is_err());
        let no_result = query::parse("<DescribeScalingActivitiesResponse/>").unwrap();
        assert!(parse_activities(&no_result).is_err());
    }

    /// The documented request parameters: list members numbered from 1, the token encoded.
    #[test]
    fn requests_name_groups_and_pages() {
        assert_eq!(
            groups_request(Some(&["my-asg".into(), "web app".into()]), 100, Some("t/+=")),
            "Action=DescribeAutoScalingGroups&Version=2011-01-01&AutoScalingGroupNames.member.1=my-asg&AutoScalingGroupNames.member.2=web+app&MaxRecords=100&NextToken=t%2F%2B%3D"
        );
        assert_eq!(
            groups_request(None, 100, None),
            "Action=DescribeAutoScalingGroups&Version=2011-01-01&MaxRecords=100"
        );
        assert_eq!(
            activities_request(Some("my-asg"), 100, None),
            "Action=DescribeScalingActivities&Version=2011-01-01&AutoScalingGroupName=my-asg&MaxRecords=100"
        );
        assert_eq!(
            activities_request(None, 1, Some("abc")),
            "Action=DescribeScalingActivities&Version=2011-01-01&MaxRecords=1&NextToken=abc"
        );
    }
}
