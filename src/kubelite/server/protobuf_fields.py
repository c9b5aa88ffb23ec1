"""Protobuf field numbers of the Kubernetes API types kubelite decodes.

Field numbers are part of Kubernetes' public API: they come from the `protobuf:`
struct tags of k8s.io/api and k8s.io/apimachinery (the same numbers as their
`generated.proto`). Only the numbers live here; the JSON shape of every field
(string, list, map, nested type) is read from the Kubernetes JSON schemas, so a
field's name here must be a property of the schema definition of the same name.

Each message is one line of whitespace-separated fields, in field-number order:

    name        the next field number (1 for the first field)
    7:name      field number 7; the fields after it continue from 8
    name?       a Go pointer: its zero value is meaningful and kept
    =Other      an embedded struct that JSON inlines (`json:",inline"`): its
                fields are decoded with the table `Other` of the same package
                and merged into the parent object
"""

from __future__ import annotations

from dataclasses import dataclass

_CORE_V1 = {
    "Affinity": "nodeAffinity podAffinity podAntiAffinity",
    "AppArmorProfile": "type localhostProfile?",
    "AWSElasticBlockStoreVolumeSource": "volumeID fsType partition readOnly",
    "AzureDiskVolumeSource": "diskName diskURI cachingMode? fsType? readOnly? kind?",
    "AzureFileVolumeSource": "secretName shareName readOnly",
    "Capabilities": "add drop",
    "CephFSVolumeSource": "monitors path user secretFile secretRef readOnly",
    "CinderVolumeSource": "volumeID fsType readOnly secretRef",
    "ClientIPConfig": "timeoutSeconds?",
    "ClusterTrustBundleProjection": "name? signerName? labelSelector path optional?",
    "ConfigMap": "metadata data binaryData immutable?",
    "ConfigMapEnvSource": "=LocalObjectReference optional?",
    "ConfigMapKeySelector": "=LocalObjectReference key optional?",
    "ConfigMapProjection": "=LocalObjectReference items 4:optional?",
    "ConfigMapVolumeSource": "=LocalObjectReference items defaultMode? optional?",
    "Container": (
        "name image command args workingDir ports env resources volumeMounts livenessProbe"
        " readinessProbe lifecycle terminationMessagePath imagePullPolicy securityContext"
        " stdin stdinOnce tty envFrom terminationMessagePolicy volumeDevices startupProbe"
        " resizePolicy restartPolicy?"
    ),
    "ContainerPort": "name hostPort containerPort protocol hostIP",
    "ContainerResizePolicy": "resourceName restartPolicy",
    "ContainerState": "waiting running terminated",
    "ContainerStateRunning": "startedAt",
    "ContainerStateTerminated": "exitCode signal reason message startedAt finishedAt containerID",
    "ContainerStateWaiting": "reason message",
    "ContainerStatus": (
        "name state lastState ready restartCount image imageID containerID started?"
        " allocatedResources resources volumeMounts user allocatedResourcesStatus"
    ),
    "ContainerUser": "linux",
    "CSIVolumeSource": "driver readOnly? fsType? volumeAttributes nodePublishSecretRef",
    "DownwardAPIProjection": "items",
    "DownwardAPIVolumeFile": "path fieldRef resourceFieldRef mode?",
    "DownwardAPIVolumeSource": "items defaultMode?",
    "EmptyDirVolumeSource": "medium sizeLimit",
    "EnvFromSource": "prefix configMapRef secretRef",
    "EnvVar": "name value valueFrom",
    "EnvVarSource": "fieldRef resourceFieldRef configMapKeyRef secretKeyRef",
    "EphemeralContainer": "=EphemeralContainerCommon targetContainerName",
    "EphemeralVolumeSource": "volumeClaimTemplate",
    "Event": (
        "metadata involvedObject reason message source firstTimestamp lastTimestamp count"
        " type eventTime series action related reportingComponent reportingInstance"
    ),
    "EventSeries": "count lastObservedTime",
    "EventSource": "component host",
    "ExecAction": "command",
    "FCVolumeSource": "targetWWNs lun? fsType readOnly wwids",
    "FlexVolumeSource": "driver fsType secretRef readOnly options",
    "FlockerVolumeSource": "datasetName datasetUUID",
    "GCEPersistentDiskVolumeSource": "pdName fsType partition readOnly",
    "GitRepoVolumeSource": "repository revision directory",
    "GlusterfsVolumeSource": "endpoints path readOnly",
    "GRPCAction": "port service?",
    "HostAlias": "ip hostnames",
    "HostIP": "ip",
    "HostPathVolumeSource": "path type?",
    "HTTPGetAction": "path port host scheme httpHeaders",
    "HTTPHeader": "name value",
    "ImageVolumeSource": "reference pullPolicy",
    "ISCSIVolumeSource": (
        "targetPortal iqn lun iscsiInterface fsType readOnly portals chapAuthDiscovery"
        " 10:secretRef chapAuthSession initiatorName?"
    ),
    "KeyToPath": "key path mode?",
    "Lifecycle": "postStart preStop",
    "LifecycleHandler": "exec httpGet tcpSocket sleep",
    "LinuxContainerUser": "uid gid supplementalGroups",
    "LoadBalancerIngress": "ip hostname ipMode? ports",
    "LoadBalancerStatus": "ingress",
    "LocalObjectReference": "name",
    "Namespace": "metadata spec status",
    "NamespaceCondition": "type status 4:lastTransitionTime reason message",
    "NamespaceSpec": "finalizers",
    "NamespaceStatus": "phase conditions",
    "NFSVolumeSource": "server path readOnly",
    "NodeAffinity": (
        "requiredDuringSchedulingIgnoredDuringExecution"
        " preferredDuringSchedulingIgnoredDuringExecution"
    ),
    "NodeSelector": "nodeSelectorTerms",
    "NodeSelectorRequirement": "key operator values",
    "NodeSelectorTerm": "matchExpressions matchFields",
    "ObjectFieldSelector": "apiVersion fieldPath",
    "ObjectReference": "kind namespace name uid apiVersion resourceVersion fieldPath",
    "PersistentVolumeClaimSpec": (
        "accessModes resources volumeName selector storageClassName? volumeMode? dataSource"
        " dataSourceRef volumeAttributesClassName?"
    ),
    "PersistentVolumeClaimTemplate": "metadata spec",
    "PersistentVolumeClaimVolumeSource": "claimName readOnly",
    "PhotonPersistentDiskVolumeSource": "pdID fsType",
    "Pod": "metadata spec status",
    "PodAffinity": (
        "requiredDuringSchedulingIgnoredDuringExecution"
        " preferredDuringSchedulingIgnoredDuringExecution"
    ),
    "PodAffinityTerm": (
        "labelSelector namespaces topologyKey namespaceSelector matchLabelKeys mismatchLabelKeys"
    ),
    "PodAntiAffinity": (
        "requiredDuringSchedulingIgnoredDuringExecution"
        " preferredDuringSchedulingIgnoredDuringExecution"
    ),
    "PodCondition": "type status lastProbeTime lastTransitionTime reason message",
    "PodDNSConfig": "nameservers searches options",
    "PodDNSConfigOption": "name value?",
    "PodIP": "ip",
    "PodOS": "name",
    "PodReadinessGate": "conditionType",
    "PodResourceClaim": "name 3:resourceClaimName? resourceClaimTemplateName?",
    "PodResourceClaimStatus": "name resourceClaimName?",
    "PodSchedulingGate": "name",
    "PodSecurityContext": (
        "seLinuxOptions runAsUser? runAsNonRoot? supplementalGroups fsGroup? runAsGroup?"
        " sysctls windowsOptions fsGroupChangePolicy? seccompProfile appArmorProfile"
        " supplementalGroupsPolicy? seLinuxChangePolicy?"
    ),
    "PodSpec": (
        "volumes containers restartPolicy terminationGracePeriodSeconds?"
        " activeDeadlineSeconds? dnsPolicy nodeSelector serviceAccountName serviceAccount"
        " nodeName hostNetwork hostPID hostIPC securityContext imagePullSecrets hostname"
        " subdomain affinity schedulerName initContainers automountServiceAccountToken?"
        " tolerations hostAliases priorityClassName priority? dnsConfig shareProcessNamespace?"
        " readinessGates runtimeClassName? enableServiceLinks? preemptionPolicy? overhead"
        " topologySpreadConstraints ephemeralContainers setHostnameAsFQDN? os hostUsers?"
        " schedulingGates resourceClaims resources"
    ),
    "PodStatus": (
        "phase conditions message reason hostIP podIP startTime containerStatuses qosClass"
        " initContainerStatuses nominatedNodeName podIPs ephemeralContainerStatuses resize"
        " resourceClaimStatuses hostIPs"
    ),
    "PodTemplateSpec": "metadata spec",
    "PortStatus": "port protocol error?",
    "PortworxVolumeSource": "volumeID fsType readOnly",
    "PreferredSchedulingTerm": "weight preference",
    "Probe": (
        "=ProbeHandler initialDelaySeconds timeoutSeconds periodSeconds successThreshold"
        " failureThreshold terminationGracePeriodSeconds?"
    ),
    "ProbeHandler": "exec httpGet tcpSocket grpc",
    "ProjectedVolumeSource": "sources defaultMode?",
    "QuobyteVolumeSource": "registry volume readOnly user group tenant",
    "RBDVolumeSource": "monitors image fsType pool user keyring secretRef readOnly",
    "ResourceClaim": "name request",
    "ResourceFieldSelector": "containerName resource divisor",
    "ResourceHealth": "resourceID health",
    "ResourceQuota": "metadata spec status",
    "ResourceQuotaSpec": "hard scopes scopeSelector",
    "ResourceQuotaStatus": "hard used",
    "ResourceRequirements": "limits requests claims",
    "ResourceStatus": "name resources",
    "ScaleIOVolumeSource": (
        "gateway system secretRef sslEnabled protectionDomain storagePool storageMode"
        " volumeName fsType readOnly"
    ),
    "ScopedResourceSelectorRequirement": "scopeName operator values",
    "ScopeSelector": "matchExpressions",
    "SeccompProfile": "type localhostProfile?",
    "Secret": "metadata data type stringData immutable?",
    "SecretEnvSource": "=LocalObjectReference optional?",
    "SecretKeySelector": "=LocalObjectReference key optional?",
    "SecretProjection": "=LocalObjectReference items 4:optional?",
    "SecretVolumeSource": "secretName items defaultMode? optional?",
    "SecurityContext": (
        "capabilities privileged? seLinuxOptions runAsUser? runAsNonRoot?"
        " readOnlyRootFilesystem? allowPrivilegeEscalation? runAsGroup? procMount?"
        " windowsOptions seccompProfile appArmorProfile"
    ),
    "SELinuxOptions": "user role type level",
    "Service": "metadata spec status",
    "ServiceAccount": "metadata secrets imagePullSecrets automountServiceAccountToken?",
    "ServiceAccountTokenProjection": "audience expirationSeconds? path",
    "ServicePort": "name protocol port targetPort nodePort appProtocol?",
    "ServiceSpec": (
        "ports selector clusterIP type externalIPs 7:sessionAffinity loadBalancerIP"
        " loadBalancerSourceRanges externalName externalTrafficPolicy healthCheckNodePort"
        " publishNotReadyAddresses sessionAffinityConfig 17:ipFamilyPolicy? clusterIPs"
        " ipFamilies allocateLoadBalancerNodePorts? loadBalancerClass? internalTrafficPolicy?"
        " trafficDistribution?"
    ),
    "ServiceStatus": "loadBalancer conditions",
    "SessionAffinityConfig": "clientIP",
    "SleepAction": "seconds",
    "StorageOSVolumeSource": "volumeName volumeNamespace fsType readOnly secretRef",
    "Sysctl": "name value",
    "TCPSocketAction": "port host",
    "Toleration": "key operator value effect tolerationSeconds?",
    "TopologySpreadConstraint": (
        "maxSkew topologyKey whenUnsatisfiable labelSelector minDomains? nodeAffinityPolicy?"
        " nodeTaintsPolicy? matchLabelKeys"
    ),
    "TypedLocalObjectReference": "apiGroup? kind name",
    "TypedObjectReference": "apiGroup? kind name namespace?",
    "Volume": "name =VolumeSource",
    "VolumeDevice": "name devicePath",
    "VolumeMount": "name readOnly mountPath subPath mountPropagation? subPathExpr recursiveReadOnly?",
    "VolumeMountStatus": "name mountPath readOnly recursiveReadOnly?",
    "VolumeProjection": "secret downwardAPI configMap serviceAccountToken clusterTrustBundle",
    "VolumeResourceRequirements": "limits requests",
    "VolumeSource": (
        "hostPath emptyDir gcePersistentDisk awsElasticBlockStore gitRepo secret nfs iscsi"
        " glusterfs persistentVolumeClaim rbd flexVolume cinder cephfs flocker downwardAPI fc"
        " azureFile configMap vsphereVolume quobyte azureDisk photonPersistentDisk"
        " portworxVolume scaleIO projected storageos csi ephemeral image"
    ),
    "VsphereVirtualDiskVolumeSource": "volumePath fsType storagePolicyName storagePolicyID",
    "WeightedPodAffinityTerm": "weight podAffinityTerm",
    "WindowsSecurityContextOptions": (
        "gmsaCredentialSpecName? gmsaCredentialSpec? runAsUserName? hostProcess?"
    ),
}
# EphemeralContainerCommon carries exactly Container's fields and numbers.
_CORE_V1["EphemeralContainerCommon"] = _CORE_V1["Container"]

_META_V1 = {
    "Condition": "type status observedGeneration lastTransitionTime reason message",
    "DeleteOptions": (
        "gracePeriodSeconds? preconditions orphanDependents? propagationPolicy? dryRun"
        " ignoreStoreReadErrorWithClusterBreakingPotential?"
    ),
    "FieldSelectorRequirement": "key operator values",
    "LabelSelector": "matchLabels matchExpressions",
    "LabelSelectorRequirement": "key operator values",
    "ManagedFieldsEntry": "manager operation apiVersion time 6:fieldsType fieldsV1 subresource",
    "ObjectMeta": (
        "name generateName namespace selfLink uid resourceVersion generation creationTimestamp"
        " deletionTimestamp deletionGracePeriodSeconds? labels annotations ownerReferences"
        " finalizers 17:managedFields"
    ),
    "OwnerReference": "kind 3:name uid apiVersion controller? blockOwnerDeletion?",
    "Preconditions": "uid? resourceVersion?",
}

_APPS_V1 = {
    "Deployment": "metadata spec status",
    "DeploymentCondition": "type status 4:reason message lastUpdateTime lastTransitionTime",
    "DeploymentSpec": (
        "replicas? selector template strategy minReadySeconds revisionHistoryLimit? paused"
        " 9:progressDeadlineSeconds?"
    ),
    "DeploymentStatus": (
        "observedGeneration replicas updatedReplicas availableReplicas unavailableReplicas"
        " conditions readyReplicas collisionCount?"
    ),
    "DeploymentStrategy": "type rollingUpdate",
    "RollingUpdateDeployment": "maxUnavailable maxSurge",
}

_BATCH_V1 = {
    "CronJob": "metadata spec status",
    "CronJobSpec": (
        "schedule startingDeadlineSeconds? concurrencyPolicy suspend? jobTemplate"
        " successfulJobsHistoryLimit? failedJobsHistoryLimit? timeZone?"
    ),
    "CronJobStatus": "active 4:lastScheduleTime lastSuccessfulTime",
    "Job": "metadata spec status",
    "JobCondition": "type status lastProbeTime lastTransitionTime reason message",
    "JobSpec": (
        "parallelism? completions? activeDeadlineSeconds? selector manualSelector? template"
        " backoffLimit? ttlSecondsAfterFinished? completionMode? suspend? podFailurePolicy"
        " backoffLimitPerIndex? maxFailedIndexes? podReplacementPolicy? managedBy?"
        " successPolicy"
    ),
    "JobStatus": (
        "conditions startTime completionTime active succeeded failed completedIndexes"
        " uncountedTerminatedPods ready? failedIndexes? terminating?"
    ),
    "JobTemplateSpec": "metadata spec",
    "PodFailurePolicy": "rules",
    "PodFailurePolicyOnExitCodesRequirement": "containerName? operator values",
    "PodFailurePolicyOnPodConditionsPattern": "type status",
    "PodFailurePolicyRule": "action onExitCodes onPodConditions",
    "SuccessPolicy": "rules",
    "SuccessPolicyRule": "succeededIndexes? succeededCount?",
    "UncountedTerminatedPods": "succeeded failed",
}

_NETWORKING_V1 = {
    "HTTPIngressPath": "path backend pathType?",
    "HTTPIngressRuleValue": "paths",
    "Ingress": "metadata spec status",
    "IngressBackend": "3:resource service",
    "IngressLoadBalancerIngress": "ip hostname 4:ports",
    "IngressLoadBalancerStatus": "ingress",
    "IngressPortStatus": "port protocol error?",
    "IngressRule": "host =IngressRuleValue",
    "IngressRuleValue": "http",
    "IngressServiceBackend": "name port",
    "IngressSpec": "defaultBackend tls rules ingressClassName?",
    "IngressStatus": "loadBalancer",
    "IngressTLS": "hosts secretName",
    "ServiceBackendPort": "name number",
}

_POLICY_V1 = {
    "Eviction": "metadata deleteOptions",
    "PodDisruptionBudget": "metadata spec status",
    "PodDisruptionBudgetSpec": "minAvailable selector maxUnavailable unhealthyPodEvictionPolicy?",
    "PodDisruptionBudgetStatus": (
        "observedGeneration disruptedPods disruptionsAllowed currentHealthy desiredHealthy"
        " expectedPods conditions"
    ),
}

_AUTHENTICATION_V1 = {
    "BoundObjectReference": "kind apiVersion name uid",
    "SelfSubjectReview": "metadata status",
    "SelfSubjectReviewStatus": "userInfo",
    "TokenRequest": "metadata spec status",
    "TokenRequestSpec": "audiences 3:boundObjectRef expirationSeconds?",
    "TokenRequestStatus": "token expirationTimestamp",
    "UserInfo": "username uid groups extra",
}

_AUTHORIZATION_V1 = {
    "FieldSelectorAttributes": "rawSelector requirements",
    "LabelSelectorAttributes": "rawSelector requirements",
    "NonResourceAttributes": "path verb",
    "NonResourceRule": "verbs nonResourceURLs",
    "ResourceAttributes": (
        "namespace verb group version resource subresource name fieldSelector labelSelector"
    ),
    "ResourceRule": "verbs apiGroups resources resourceNames",
    "SelfSubjectAccessReview": "metadata spec status",
    "SelfSubjectAccessReviewSpec": "resourceAttributes nonResourceAttributes",
    "SelfSubjectRulesReview": "metadata spec status",
    "SelfSubjectRulesReviewSpec": "namespace",
    "SubjectAccessReviewStatus": "allowed reason evaluationError denied",
    "SubjectRulesReviewStatus": "resourceRules nonResourceRules incomplete evaluationError",
}

_RBAC_V1 = {
    "AggregationRule": "clusterRoleSelectors",
    "ClusterRole": "metadata rules aggregationRule",
    "ClusterRoleBinding": "metadata subjects roleRef",
    "PolicyRule": "verbs apiGroups resources resourceNames nonResourceURLs",
    "Role": "metadata rules",
    "RoleBinding": "metadata subjects roleRef",
    "RoleRef": "apiGroup kind name",
    "Subject": "kind apiGroup name namespace",
}

_AUTOSCALING_V1 = {
    "CrossVersionObjectReference": "kind name apiVersion",
    "HorizontalPodAutoscaler": "metadata spec status",
    "HorizontalPodAutoscalerSpec": (
        "scaleTargetRef minReplicas? maxReplicas targetCPUUtilizationPercentage?"
    ),
    "HorizontalPodAutoscalerStatus": (
        "observedGeneration? lastScaleTime currentReplicas desiredReplicas"
        " currentCPUUtilizationPercentage?"
    ),
}

_CERTIFICATES_V1 = {
    "CertificateSigningRequest": "metadata spec status",
    "CertificateSigningRequestCondition": (
        "type reason message lastUpdateTime lastTransitionTime status"
    ),
    "CertificateSigningRequestSpec": (
        "request username uid groups usages extra signerName expirationSeconds?"
    ),
    "CertificateSigningRequestStatus": "conditions certificate",
}

_SCHEDULING_V1 = {
    "PriorityClass": "metadata value globalDefault description preemptionPolicy?",
}

_PACKAGES: dict[str, dict[str, str]] = {
    "io.k8s.api.core.v1": _CORE_V1,
    "io.k8s.apimachinery.pkg.apis.meta.v1": _META_V1,
    "io.k8s.api.apps.v1": _APPS_V1,
    "io.k8s.api.batch.v1": _BATCH_V1,
    "io.k8s.api.networking.v1": _NETWORKING_V1,
    "io.k8s.api.policy.v1": _POLICY_V1,
    "io.k8s.api.authentication.v1": _AUTHENTICATION_V1,
    # kubectl auth whoami falls back to these versions; their messages match v1.
    "io.k8s.api.authentication.v1beta1": {
        "SelfSubjectReview": _AUTHENTICATION_V1["SelfSubjectReview"],
        "SelfSubjectReviewStatus": _AUTHENTICATION_V1["SelfSubjectReviewStatus"],
    },
    "io.k8s.api.authorization.v1": _AUTHORIZATION_V1,
    "io.k8s.api.rbac.v1": _RBAC_V1,
    "io.k8s.api.autoscaling.v1": _AUTOSCALING_V1,
    "io.k8s.api.certificates.v1": _CERTIFICATES_V1,
    "io.k8s.api.scheduling.v1": _SCHEDULING_V1,
}


@dataclass(frozen=True, slots=True)
class Field:
    """One protobuf field: its JSON name, or for an inlined struct the table to merge."""

    name: str
    pointer: bool = False
    inline: str | None = None


def _parse(package: str, spec: str) -> dict[int, Field]:
    fields: dict[int, Field] = {}
    number = 0
    for token in spec.split():
        if ":" in token:
            explicit, token = token.split(":", 1)
            number = int(explicit)
        else:
            number += 1
        if token.startswith("="):
            fields[number] = Field(name=token[1:], inline=f"{package}.{token[1:]}")
        else:
            fields[number] = Field(name=token.rstrip("?"), pointer=token.endswith("?"))
    return fields


MESSAGES: dict[str, dict[int, Field]] = {
    f"{package}.{message}": _parse(package, spec)
    for package, messages in _PACKAGES.items()
    for message, spec in messages.items()
}
"""Definition name (io.k8s.api.apps.v1.DeploymentSpec) -> field number -> Field."""
